package siglip2.core

/**
 * The SDK's image preprocessing (`core/preprocess.py`) from a decoded ARGB buffer, as Android's
 * `Bitmap.getPixels` fills it (non-premultiplied, row-major): transparent pixels composited onto white
 * with Pillow's integer arithmetic, resize with Pillow's filter to the manifest's size, then
 * `(v * rescale_factor - mean) / std` in float32 per channel.
 *
 * EXIF orientation is not read here: the caller rotates first (on Android from ExifInterface, see
 * [ExifOrientation]), as the SDK does when it loads a file.
 */
class ImagePreprocessor(val spec: ImageSpec) {
    /** Float32 value of each 8-bit level per channel: the same float ops numpy does, done once. */
    private val levels: Array<FloatArray> = Array(3) { c ->
        val rescale = spec.rescaleFactor.toFloat()
        val mean = spec.mean[c].toFloat()
        val std = spec.std[c].toFloat()
        FloatArray(256) { v -> (v.toFloat() * rescale - mean) / std }
    }

    /** Values per image: 3 × height × width. */
    val size: Int get() = 3 * spec.height * spec.width

    /** One image as float32 CHW (3 × height × width). */
    fun preprocess(argb: IntArray, width: Int, height: Int): FloatArray {
        val out = FloatArray(size)
        preprocessInto(argb, width, height, out, 0, channelsLast = false)
        return out
    }

    /**
     * Write one image into [out] at [offset] (a slot of a batch buffer): CHW, or HWC when
     * [channelsLast] (some TFLite conversions take NHWC input). With [reuseInput] the ARGB buffer is
     * overwritten instead of copied (saves one full-size buffer for a large photo).
     */
    @JvmOverloads
    fun preprocessInto(
        argb: IntArray,
        width: Int,
        height: Int,
        out: FloatArray,
        offset: Int,
        channelsLast: Boolean,
        reuseInput: Boolean = false
    ) {
        if (width <= 0 || height <= 0 || argb.size < width * height) {
            throw InputException("ARGB buffer of ${argb.size} pixels is not a $width × $height image")
        }
        if (offset < 0 || offset + size > out.size) throw InputException("no room for an image at offset $offset")
        val count = width * height
        val rgb = compositeOnWhite(argb, count, if (reuseInput) argb else IntArray(count))
        val resized = PilResize.resize(rgb, width, height, spec.width, spec.height, spec.resample)
        val plane = spec.width * spec.height
        for (i in 0 until plane) {
            val p = resized[i]
            val r = levels[0][p ushr 16 and 0xff]
            val g = levels[1][p ushr 8 and 0xff]
            val b = levels[2][p and 0xff]
            if (channelsLast) {
                out[offset + 3 * i] = r
                out[offset + 3 * i + 1] = g
                out[offset + 3 * i + 2] = b
            } else {
                out[offset + i] = r
                out[offset + plane + i] = g
                out[offset + 2 * plane + i] = b
            }
        }
    }

    companion object {
        /**
         * Pillow's `alpha_composite(white, image)` then RGB: fully transparent pixels become white, partial
         * ones blend with Pillow's rounded 7-bit fixed point (AlphaComposite.c). Writes packed 0xRRGGBB
         * into [out] (which may be [argb] itself) and returns it.
         */
        @JvmStatic
        @JvmOverloads
        fun compositeOnWhite(argb: IntArray, count: Int, out: IntArray = IntArray(count)): IntArray {
            for (i in 0 until count) {
                val p = argb[i]
                val a = p ushr 24
                out[i] = when (a) {
                    255 -> p and 0xffffff
                    0 -> 0xffffff
                    else -> blendOnWhite(p, a)
                }
            }
            return out
        }

        private fun blendOnWhite(p: Int, a: Int): Int {
            val blend = 255L * (255 - a)
            val outA255 = a * 255L + blend
            val coef1 = a * 255L * 255L * 128L / outA255
            val coef2 = 255L * 128L - coef1
            fun channel(v: Int): Int {
                val tmp = v * coef1 + 255L * coef2 + (0x80L shl 7)
                return ((((tmp ushr 8) + tmp) ushr 8) ushr 7).toInt()
            }
            return (channel(p ushr 16 and 0xff) shl 16) or (channel(p ushr 8 and 0xff) shl 8) or channel(p and 0xff)
        }
    }
}

/** EXIF orientation (tag 0x0112, values 1..8) applied to an ARGB buffer, as Pillow's `exif_transpose`. */
class OrientedImage(val argb: IntArray, val width: Int, val height: Int)

object ExifOrientation {
    /** The upright image; orientation 1 (or an unknown value) returns the input unchanged. */
    @JvmStatic
    fun apply(argb: IntArray, width: Int, height: Int, orientation: Int): OrientedImage {
        if (orientation !in 2..8) return OrientedImage(argb, width, height)
        val swaps = orientation >= 5
        val outWidth = if (swaps) height else width
        val outHeight = if (swaps) width else height
        val out = IntArray(width * height)
        for (y in 0 until outHeight) {
            for (x in 0 until outWidth) {
                val source = when (orientation) {
                    2 -> y * width + (width - 1 - x) // mirror left-right
                    3 -> (height - 1 - y) * width + (width - 1 - x) // rotate 180
                    4 -> (height - 1 - y) * width + x // mirror top-bottom
                    5 -> x * width + y // transpose
                    6 -> (height - 1 - x) * width + y // rotate 90 clockwise
                    7 -> (height - 1 - x) * width + (width - 1 - y) // transverse
                    else -> x * width + (width - 1 - y) // 8: rotate 90 counter-clockwise
                }
                out[y * outWidth + x] = argb[source]
            }
        }
        return OrientedImage(out, outWidth, outHeight)
    }
}
