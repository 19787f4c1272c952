package siglip2.demo.index

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import androidx.exifinterface.media.ExifInterface
import siglip2.core.ExifOrientation
import siglip2.core.OrientedImage
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * A photo from MediaStore as the upright ARGB buffer the core preprocesses.
 *
 * Differences from the SDK (which decodes with Pillow), said plainly:
 * - photos over [MAX_DECODED_PIXELS] are decoded at 1/2, 1/4, ... by Android's decoder to bound memory
 *   (a 12 MP photo would need ~150 MB of buffers); the model input is then resized from that;
 * - JPEG decoding is Android's (libjpeg-turbo in Skia), close to but not guaranteed bit-equal to Pillow's.
 * Opaque photos are read without color conversion (Pillow ignores ICC profiles too); photos with
 * transparency come unpremultiplied from `getPixels`. The EXIF orientation is applied afterwards, as the
 * SDK's loader does.
 */
object PhotoDecoder {
    const val MAX_DECODED_PIXELS = 4_000_000L

    fun decode(resolver: ContentResolver, uri: Uri): OrientedImage {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        open(resolver, uri).use { BitmapFactory.decodeStream(it, null, bounds) }
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) throw IOException("not an image Android can decode")
        var sample = 1
        while (bounds.outWidth.toLong() * bounds.outHeight / (sample.toLong() * sample) > MAX_DECODED_PIXELS) sample *= 2
        val options = BitmapFactory.Options().apply {
            inSampleSize = sample
            inPreferredConfig = Bitmap.Config.ARGB_8888
        }
        val bitmap = open(resolver, uri).use { BitmapFactory.decodeStream(it, null, options) }
            ?: throw IOException("truncated or corrupt image data")
        val width = bitmap.width
        val height = bitmap.height
        val argb = try {
            pixels(bitmap)
        } finally {
            bitmap.recycle()
        }
        return ExifOrientation.apply(argb, width, height, orientation(resolver, uri))
    }

    private fun pixels(bitmap: Bitmap): IntArray {
        val count = bitmap.width * bitmap.height
        val argb = IntArray(count)
        if (bitmap.hasAlpha()) {
            bitmap.getPixels(argb, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
            return argb
        }
        // The raw decoded values (getPixels would convert a wide-gamut photo to sRGB): RGBA bytes in memory.
        val bytes = ByteBuffer.allocateDirect(count * 4).order(ByteOrder.nativeOrder())
        bitmap.copyPixelsToBuffer(bytes)
        bytes.rewind()
        for (i in 0 until count) {
            val r = bytes.get().toInt() and 0xff
            val g = bytes.get().toInt() and 0xff
            val b = bytes.get().toInt() and 0xff
            bytes.get()
            argb[i] = (0xff shl 24) or (r shl 16) or (g shl 8) or b
        }
        return argb
    }

    private fun orientation(resolver: ContentResolver, uri: Uri): Int = try {
        open(resolver, uri).use { ExifInterface(it).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL) }
    } catch (e: IOException) {
        ExifInterface.ORIENTATION_NORMAL
    }

    private fun open(resolver: ContentResolver, uri: Uri) =
        resolver.openInputStream(uri) ?: throw IOException("the photo cannot be opened")
}
