package siglip2.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File
import javax.imageio.ImageIO

/** Pixels from a decoded ARGB buffer match the SDK's preprocess_one within 1/255 (exactly, in practice). */
class PreprocessGoldenTest {
    private val entries = Goldens.json("images.json").asJsonArray.map { it.asJsonObject }

    private fun argbOf(png: File): OrientedImage {
        val image = ImageIO.read(png)
        val argb = image.getRGB(0, 0, image.width, image.height, null, 0, image.width)
        return OrientedImage(argb, image.width, image.height)
    }

    @Test
    fun everyGoldenImagePreprocessesLikeTheSdk() {
        assertTrue(entries.size >= 30)
        val inexact = ArrayList<String>()
        val report = ArrayList<String>()
        for (entry in entries) {
            val name = entry.get("name").asString
            val spec = ImageSpec.fromJson(entry.getAsJsonObject("image"), "images.json")
            val decoded = argbOf(File(Goldens.dir, "images/" + entry.get("png").asString))
            val upright = ExifOrientation.apply(decoded.argb, decoded.width, decoded.height, entry.get("orientation").asInt)
            val actual = ImagePreprocessor(spec).preprocess(upright.argb, upright.width, upright.height)
            val expected = Goldens.floats("images/" + entry.get("pixels").asString)
            assertEquals("$name: values", expected.size, actual.size)
            val plane = spec.height * spec.width
            var worst = 0.0 // in 8-bit levels: |difference| * std / rescale
            for (i in expected.indices) {
                val levels = Math.abs(expected[i] - actual[i]) * spec.std[i / plane] / spec.rescaleFactor
                worst = maxOf(worst, levels)
            }
            if (!expected.contentEquals(actual)) inexact.add("$name (%.4f/255)".format(worst))
            if (worst > 1.0 + 1e-4) report.add("$name: off by up to %.3f/255".format(worst))
        }
        assertEquals("images beyond 1/255: $report", 0, report.size)
        val identical = entries.size - inexact.size
        println("preprocess: ${entries.size} images within 1/255, $identical bit-identical; others: $inexact")
    }
}
