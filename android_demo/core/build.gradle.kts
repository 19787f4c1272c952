// The pure-JVM core (no Android APIs): the same sources android_demo/run-jvm-tests compiles with
// Debian's kotlinc 1.3, so they use Kotlin 1.3 language features only.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    api(libs.gson)
    testImplementation(libs.junit)
}

tasks.test {
    // Golden files from the Python SDK: `.venv/bin/python android_demo/tools/make_goldens.py` writes
    // them; without them the golden tests report as skipped.
    systemProperty("siglip2.goldens", rootProject.layout.buildDirectory.dir("goldens").get().asFile.path)
    maxHeapSize = "2g"
}
