package siglip2.core

import org.junit.runner.JUnitCore
import org.junit.runner.Request
import org.junit.runner.notification.Failure
import kotlin.system.exitProcess

/**
 * Runs the named JUnit 4 classes and ends with one "N passed, N failed" line (run-jvm-tests uses it;
 * Gradle runs the same classes with its own runner).
 */
object JvmTestMain {
    @JvmStatic
    fun main(args: Array<String>) {
        val core = JUnitCore()
        var run = 0
        var failed = 0
        var assumed = 0
        var ignored = 0
        val failures = ArrayList<Failure>()
        for (name in args) {
            val result = core.run(Request.aClass(Class.forName(name)))
            run += result.runCount
            failed += result.failureCount
            assumed += result.assumptionFailureCount
            ignored += result.ignoreCount
            failures.addAll(result.failures)
            val passed = result.runCount - result.failureCount - result.assumptionFailureCount
            println("  ${name.substringAfterLast('.')}: $passed/${result.runCount} passed")
        }
        for (failure in failures) {
            println("FAILED ${failure.testHeader}: ${failure.message}")
            if (failure.exception !is AssertionError) println(failure.trace)
        }
        val skipped = assumed + ignored
        println("jvm: ${run - failed - assumed} passed, $failed failed" + if (skipped > 0) ", $skipped skipped" else "")
        exitProcess(if (failed == 0 && run > 0) 0 else 1)
    }
}
