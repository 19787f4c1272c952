package siglip2.demo.index

import android.content.ContentUris
import android.content.Context
import android.net.Uri
import android.provider.MediaStore

/** One image in the phone's MediaStore: its id, content URI and what tells a changed file apart. */
class MediaPhoto(val id: Long, val uri: Uri, val name: String, val dateModified: Long, val size: Long)

/** The photo library as MediaStore lists it (every volume's images). */
object MediaLibrary {
    fun photos(context: Context): List<MediaPhoto> {
        val collection = MediaStore.Images.Media.EXTERNAL_CONTENT_URI
        val columns = arrayOf(
            MediaStore.Images.Media._ID,
            MediaStore.Images.Media.DISPLAY_NAME,
            MediaStore.Images.Media.DATE_MODIFIED,
            MediaStore.Images.Media.SIZE
        )
        val photos = ArrayList<MediaPhoto>()
        context.contentResolver.query(collection, columns, null, null, "${MediaStore.Images.Media.DATE_ADDED} DESC")?.use { cursor ->
            val idColumn = cursor.getColumnIndexOrThrow(MediaStore.Images.Media._ID)
            val nameColumn = cursor.getColumnIndexOrThrow(MediaStore.Images.Media.DISPLAY_NAME)
            val modifiedColumn = cursor.getColumnIndexOrThrow(MediaStore.Images.Media.DATE_MODIFIED)
            val sizeColumn = cursor.getColumnIndexOrThrow(MediaStore.Images.Media.SIZE)
            while (cursor.moveToNext()) {
                val id = cursor.getLong(idColumn)
                photos.add(
                    MediaPhoto(
                        id,
                        ContentUris.withAppendedId(collection, id),
                        cursor.getString(nameColumn) ?: "photo $id",
                        cursor.getLong(modifiedColumn),
                        cursor.getLong(sizeColumn)
                    )
                )
            }
        }
        return photos
    }
}
