package siglip2.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Assume
import org.junit.Test
import java.io.File

/** The bundle the SDK wrote reads back field for field; every copy the SDK refuses is refused here too. */
class BundleGoldenTest {
    private val cases = Goldens.json("bundles.json").asJsonArray.map { it.asJsonObject }

    private fun folder(name: String) = File(Goldens.dir, "bundles/$name")

    @Test
    fun theGoodBundleReadsAsWritten() {
        val written = cases.first { it.get("ok").asBoolean }.getAsJsonObject("manifest")
        val manifest = Bundles.verify(folder("good"))
        assertEquals(written.get("model_id").asString, manifest.modelId)
        assertEquals(written.get("runtime").asString, manifest.runtime)
        assertEquals(written.get("embed_dim").asInt, manifest.embedDim)
        val size = written.getAsJsonObject("image").getAsJsonArray("size")
        assertEquals(size.get(0).asInt, manifest.image.height)
        assertEquals(size.get(1).asInt, manifest.image.width)
        assertEquals(written.getAsJsonObject("text").get("length").asInt, manifest.text.length)
        assertEquals(written.get("logit_scale").asDouble, manifest.logitScale, 0.0)
        assertEquals(written.getAsJsonObject("batch_size").get("image").asInt, manifest.batchSize.image)
        assertEquals(null, manifest.maxBatch.text)
        for (role in Bundles.FILE_ROLES) {
            assertEquals(written.getAsJsonObject("files").getAsJsonObject(role).get("sha256").asString, manifest.files[role]!!.sha256)
        }
        assertTrue(manifest.parity.containsKey("image_cosine_min"))
    }

    @Test
    fun everyBundleTheSdkRefusesIsRefused() {
        val broken = cases.filter { !it.get("ok").asBoolean }
        assertTrue(broken.size >= 10)
        for (case in broken) {
            val name = case.get("name").asString
            try {
                Bundles.verify(folder(name))
                fail("bundle '$name' was accepted; the SDK says: ${case.get("python_error").asString}")
            } catch (expected: BundleException) {
                assertTrue(expected.message!!.isNotEmpty())
            }
        }
    }

    @Test
    fun exportedBundlesOnThisMachineGetTheSdksVerdict() {
        val real = Goldens.json("real-bundles.json").asJsonArray.map { it.asJsonObject }
        Assume.assumeTrue("no bundles were exported on this machine (artifacts/bundles)", real.isNotEmpty())
        for (case in real) {
            val dir = File(case.get("path").asString)
            if (case.get("ok").asBoolean) {
                val manifest = Bundles.verify(dir, allowFailed = true)
                assertEquals(case.get("model_id").asString, manifest.modelId)
                assertEquals(case.get("status").asString, manifest.status)
            } else {
                try {
                    Bundles.verify(dir, allowFailed = true)
                    fail("'$dir' was accepted; the SDK says: ${case.get("python_error").asString}")
                } catch (expected: BundleException) {
                    assertTrue(expected.message!!.isNotEmpty())
                }
            }
        }
    }

    @Test
    fun aFailedBundleCanBeInspectedKnowingly() {
        assertEquals("failed", Bundles.verify(folder("failed-parity"), allowFailed = true).status)
    }
}
