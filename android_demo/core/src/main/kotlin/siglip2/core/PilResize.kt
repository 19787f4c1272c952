package siglip2.core

import kotlin.math.PI
import kotlin.math.ceil
import kotlin.math.cos
import kotlin.math.sin

/**
 * Pillow's `Image.resize` for 8-bit RGB, reproduced integer for integer (libImaging/Resample.c and
 * Geometry.c), so the phone feeds the model the pixels the SDK computes.
 *
 * The convolution filters run as two separable passes, horizontal then vertical unless the height shrinks
 * by more than twice as many pixels as the width (then vertical first, as Pillow 13 does). Each output pixel's
 * kernel is stretched by the downscale factor (antialiasing), its weights normalized to sum 1 and turned
 * into 22-bit fixed point, and every pass rounds and clips to 0..255 (so the vertical pass sees 8-bit
 * values, as in Pillow). NEAREST is Pillow's affine scale: the source pixel under each output centre.
 *
 * Pixels are packed `0xRRGGBB` ints (the alpha byte is ignored), row-major.
 */
object PilResize {
    @JvmField
    val FILTERS = listOf("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")

    private const val PRECISION_BITS = 32 - 8 - 2
    private const val HORIZONTAL = 0
    private const val VERTICAL = 1

    private abstract class Filter(val support: Double) {
        abstract fun weight(x: Double): Double
    }

    private val BOX = object : Filter(0.5) {
        override fun weight(x: Double): Double = if (x > -0.5 && x <= 0.5) 1.0 else 0.0
    }

    private val BILINEAR = object : Filter(1.0) {
        override fun weight(x: Double): Double {
            val a = if (x < 0.0) -x else x
            return if (a < 1.0) 1.0 - a else 0.0
        }
    }

    private val HAMMING = object : Filter(1.0) {
        override fun weight(x: Double): Double {
            var a = if (x < 0.0) -x else x
            if (a == 0.0) return 1.0
            if (a >= 1.0) return 0.0
            a *= PI
            return sin(a) / a * (0.54f.toDouble() + 0.46f.toDouble() * cos(a)) // float constants, as in C
        }
    }

    private val BICUBIC = object : Filter(2.0) {
        override fun weight(x: Double): Double {
            val a = -0.5
            val v = if (x < 0.0) -x else x
            if (v < 1.0) return ((a + 2.0) * v - (a + 3.0)) * v * v + 1
            if (v < 2.0) return (((v - 5) * v + 8) * v - 4) * a
            return 0.0
        }
    }

    private val LANCZOS = object : Filter(3.0) {
        override fun weight(x: Double): Double = if (-3.0 <= x && x < 3.0) sinc(x) * sinc(x / 3) else 0.0

        private fun sinc(x: Double): Double {
            if (x == 0.0) return 1.0
            val a = x * PI
            return sin(a) / a
        }
    }

    private fun filter(name: String): Filter? = when (name) {
        "box" -> BOX
        "bilinear" -> BILINEAR
        "hamming" -> HAMMING
        "bicubic" -> BICUBIC
        "lanczos" -> LANCZOS
        "nearest" -> null
        else -> throw IllegalArgumentException("unknown resample '$name'; use one of ${FILTERS.joinToString()}")
    }

    /** Resize packed RGB pixels from inWidth × inHeight to outWidth × outHeight with the named filter. */
    @JvmStatic
    fun resize(rgb: IntArray, inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int, resample: String): IntArray {
        if (inWidth <= 0 || inHeight <= 0 || rgb.size < inWidth * inHeight) {
            throw InputException("image of ${rgb.size} pixels is not $inWidth × $inHeight")
        }
        val filter = filter(resample)
        if (inWidth == outWidth && inHeight == outHeight) return rgb.copyOf(inWidth * inHeight)
        if (filter == null) return nearest(rgb, inWidth, inHeight, outWidth, outHeight)
        val shrinkHeight = inHeight - outHeight
        val verticalFirst = shrinkHeight > 0 && shrinkHeight > (inWidth - outWidth) * 2
        var pixels = rgb
        var width = inWidth
        var height = inHeight
        for (pass in if (verticalFirst) listOf(VERTICAL, HORIZONTAL) else listOf(HORIZONTAL, VERTICAL)) {
            if (pass == HORIZONTAL && outWidth != inWidth) {
                pixels = horizontal(pixels, width, height, outWidth, coefficients(inWidth, outWidth, filter))
                width = outWidth
            } else if (pass == VERTICAL && outHeight != inHeight) {
                pixels = vertical(pixels, width, outHeight, coefficients(inHeight, outHeight, filter))
                height = outHeight
            }
        }
        return pixels
    }

    /** Per output pixel: the first source index, how many follow, and their fixed-point weights. */
    private class Coefficients(val kernelSize: Int, val bounds: IntArray, val weights: IntArray)

    private fun coefficients(inSize: Int, outSize: Int, filter: Filter): Coefficients {
        val scale = inSize.toDouble() / outSize
        val filterScale = if (scale < 1.0) 1.0 else scale
        val support = filter.support * filterScale
        val kernelSize = ceil(support).toInt() * 2 + 1
        val bounds = IntArray(outSize * 2)
        val weights = IntArray(outSize * kernelSize)
        val k = DoubleArray(kernelSize)
        for (xx in 0 until outSize) {
            val center = (xx + 0.5) * scale
            val ss = 1.0 / filterScale
            // (int) truncation as in C, then clamped to the image
            val xmin = maxOf((center - support + 0.5).toInt(), 0)
            val xmax = minOf((center + support + 0.5).toInt(), inSize) - xmin
            var total = 0.0
            for (x in 0 until xmax) {
                val w = filter.weight((x + xmin - center + 0.5) * ss)
                k[x] = w
                total += w
            }
            for (x in 0 until kernelSize) {
                val w = if (x < xmax && total != 0.0) k[x] / total else if (x < xmax) k[x] else 0.0
                weights[xx * kernelSize + x] =
                    if (w < 0) (-0.5 + w * (1 shl PRECISION_BITS)).toInt() else (0.5 + w * (1 shl PRECISION_BITS)).toInt()
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coefficients(kernelSize, bounds, weights)
    }

    private fun horizontal(src: IntArray, inWidth: Int, height: Int, outWidth: Int, c: Coefficients): IntArray {
        val out = IntArray(outWidth * height)
        for (y in 0 until height) {
            val row = y * inWidth
            for (xx in 0 until outWidth) {
                val xmin = c.bounds[xx * 2]
                val xmax = c.bounds[xx * 2 + 1]
                val k = xx * c.kernelSize
                var r = 1 shl (PRECISION_BITS - 1)
                var g = r
                var b = r
                for (x in 0 until xmax) {
                    val p = src[row + xmin + x]
                    val w = c.weights[k + x]
                    r += (p ushr 16 and 0xff) * w
                    g += (p ushr 8 and 0xff) * w
                    b += (p and 0xff) * w
                }
                out[y * outWidth + xx] = (clip8(r) shl 16) or (clip8(g) shl 8) or clip8(b)
            }
        }
        return out
    }

    private fun vertical(src: IntArray, width: Int, outHeight: Int, c: Coefficients): IntArray {
        val out = IntArray(width * outHeight)
        for (yy in 0 until outHeight) {
            val ymin = c.bounds[yy * 2]
            val ymax = c.bounds[yy * 2 + 1]
            val k = yy * c.kernelSize
            for (xx in 0 until width) {
                var r = 1 shl (PRECISION_BITS - 1)
                var g = r
                var b = r
                for (y in 0 until ymax) {
                    val p = src[(ymin + y) * width + xx]
                    val w = c.weights[k + y]
                    r += (p ushr 16 and 0xff) * w
                    g += (p ushr 8 and 0xff) * w
                    b += (p and 0xff) * w
                }
                out[yy * width + xx] = (clip8(r) shl 16) or (clip8(g) shl 8) or clip8(b)
            }
        }
        return out
    }

    /** Pillow's clip8: the fixed-point sum back to 0..255 (arithmetic shift floors negatives). */
    private fun clip8(sum: Int): Int {
        val v = sum shr PRECISION_BITS
        return if (v < 0) 0 else if (v > 255) 255 else v
    }

    /** Pillow's ImagingScaleAffine: positions accumulate in double, (int) truncates. */
    private fun nearest(src: IntArray, inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int): IntArray {
        val out = IntArray(outWidth * outHeight)
        val a0 = inWidth.toDouble() / outWidth
        val a4 = inHeight.toDouble() / outHeight
        val xIn = IntArray(outWidth)
        var xo = a0 * 0.5
        for (x in 0 until outWidth) {
            xIn[x] = coord(xo).coerceIn(0, inWidth - 1)
            xo += a0
        }
        var yo = a4 * 0.5
        for (y in 0 until outHeight) {
            val yi = coord(yo).coerceIn(0, inHeight - 1)
            for (x in 0 until outWidth) out[y * outWidth + x] = src[yi * inWidth + xIn[x]]
            yo += a4
        }
        return out
    }

    private fun coord(v: Double): Int = if (v < 0.0) -1 else v.toInt()
}
