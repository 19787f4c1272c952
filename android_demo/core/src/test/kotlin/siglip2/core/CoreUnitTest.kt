package siglip2.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** Search order, batching and orientation rules that need no golden file. */
class CoreUnitTest {
    @Test
    fun equalScoresKeepInsertionOrder() {
        val index = VectorIndex(2)
        index.add(floatArrayOf(0f, 1f))
        index.add(floatArrayOf(1f, 0f))
        index.add(floatArrayOf(0f, 1f))
        index.add(floatArrayOf(1f, 0f))
        assertEquals(listOf(1, 3, 0), index.search(floatArrayOf(1f, 0f), 3).map { it.row })
    }

    @Test
    fun searchReturnsAtMostTheIndexSize() {
        val index = VectorIndex(1)
        index.add(floatArrayOf(1f))
        assertEquals(1, index.search(floatArrayOf(1f), 10).size)
    }

    @Test
    fun fixedBatchesPadTheLastChunk() {
        val chunks = BatchPlan(fixed = 4, max = null).chunks(10, preferred = 32)
        assertEquals(listOf(0, 4, 8), chunks.map { it.start })
        assertEquals(listOf(4, 4, 2), chunks.map { it.items })
        assertEquals(listOf(4, 4, 4), chunks.map { it.batch })
    }

    @Test
    fun dynamicBatchesStayUnderTheBound() {
        val chunks = BatchPlan(fixed = null, max = 3).chunks(7, preferred = 32)
        assertEquals(listOf(3, 3, 1), chunks.map { it.batch })
    }

    @Test
    fun paddingRepeatsTheLastRealRow() {
        val buffer = floatArrayOf(1f, 2f, 3f, 4f, 0f, 0f, 0f, 0f)
        BatchPlan.padWithLastRow(buffer, rowSize = 2, items = 2, batch = 4)
        assertArrayEquals(floatArrayOf(1f, 2f, 3f, 4f, 3f, 4f, 3f, 4f), buffer, 0f)
        val rows = BatchPlan.padWithLastRow(listOf(intArrayOf(7), intArrayOf(8)), 3)
        assertEquals(listOf(7, 8, 8), rows.map { it[0] })
    }

    @Test
    fun rotatingFourTimesIsTheIdentity() {
        val argb = IntArray(6) { it }
        var image = OrientedImage(argb, 3, 2)
        repeat(4) { image = ExifOrientation.apply(image.argb, image.width, image.height, 6) }
        assertArrayEquals(argb, image.argb)
        assertEquals(3, image.width)
    }

    @Test
    fun clockwiseRotationPutsTheBottomLeftFirst() {
        // 3 wide, 2 high: rows [0 1 2] / [3 4 5]; turned clockwise: rows [3 0] / [4 1] / [5 2]
        val image = ExifOrientation.apply(IntArray(6) { it }, 3, 2, 6)
        assertArrayEquals(intArrayOf(3, 0, 4, 1, 5, 2), image.argb)
        assertEquals(2, image.width)
    }

    @Test
    fun transparentPixelsBecomeWhite() {
        val rgb = ImagePreprocessor.compositeOnWhite(intArrayOf(0x00123456, 0xff123456.toInt()), 2)
        assertArrayEquals(intArrayOf(0xffffff, 0x123456), rgb)
    }

    @Test
    fun opaqueBlackMapsToMinusOne() {
        val spec = ImageSpec(2, 2, "bilinear", doubleArrayOf(0.5, 0.5, 0.5), doubleArrayOf(0.5, 0.5, 0.5), 1.0 / 255)
        val pixels = ImagePreprocessor(spec).preprocess(IntArray(16) { 0xff000000.toInt() }, 4, 4)
        assertTrue(pixels.all { it == -1f })
    }

    @Test(expected = BundleException::class)
    fun manifestWithAnotherFormatIsRefused() {
        Bundles.parseManifest("{\"format_version\": 2}", "manifest.json")
    }
}
