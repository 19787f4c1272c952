package siglip2.core

import com.google.gson.JsonElement
import com.google.gson.JsonParser
import org.junit.Assume
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The golden files written by `android_demo/tools/make_goldens.py` (the Python SDK's own outputs).
 * `run-jvm-tests` generates them and sets `siglip2.requireGoldens`, so there a missing file fails; in a
 * plain Gradle run without them the golden tests are reported as skipped, never as passed.
 */
object Goldens {
    val dir: File = File(
        System.getProperty("siglip2.goldens") ?: System.getenv("SIGLIP2_GOLDENS") ?: "../build/goldens"
    )

    fun file(name: String): File {
        val file = File(dir, name)
        if (!file.exists()) {
            val hint = "golden file '$file' is missing: run .venv/bin/python android_demo/tools/make_goldens.py"
            if (System.getProperty("siglip2.requireGoldens") == "true") throw AssertionError(hint)
            Assume.assumeTrue(hint, false)
        }
        return file
    }

    fun json(name: String): JsonElement = file(name).reader(Charsets.UTF_8).use { JsonParser.parseReader(it) }

    /** A little-endian float32 file. */
    fun floats(name: String): FloatArray {
        val bytes = file(name).readBytes()
        val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        val out = FloatArray(buffer.remaining())
        buffer.get(out)
        return out
    }
}
