package siglip2.demo.index

import android.content.ContentValues
import android.content.Context
import android.database.sqlite.SQLiteDatabase
import android.database.sqlite.SQLiteOpenHelper
import android.net.Uri
import siglip2.core.VectorIndex
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** What indexing stored about one photo: its vector, or why it failed. */
class PhotoRecord(
    val photo: MediaPhoto,
    val vector: FloatArray?,
    val error: String?
)

/** The photos one model can search: vectors in row order, with the photo behind each row. */
class SearchCorpus(val modelId: String, val index: VectorIndex, val uris: List<Uri>, val names: List<String>)

/** How much of the library a model has indexed, and the running cost per image measured on this phone. */
class IndexStats(
    val indexed: Long,
    val failed: Long,
    val timedImages: Long,
    val embedMsPerImage: Double,
    val prepareMsPerImage: Double,
    val runtime: String
)

/**
 * The photo index: a SQLite catalog of (model, photo) → vector, tied to the bundle's model id so a
 * different model's vectors are never mixed in. Writes go one batch per transaction (WAL), so a killed
 * worker loses at most the batch in flight and the next run carries on with what is missing.
 */
class PhotoDb(context: Context) : SQLiteOpenHelper(context, "photo-index.db", null, 1) {
    override fun onConfigure(db: SQLiteDatabase) {
        db.enableWriteAheadLogging()
    }

    override fun onCreate(db: SQLiteDatabase) {
        db.execSQL(
            """CREATE TABLE photos (
                model_id TEXT NOT NULL, media_id INTEGER NOT NULL, uri TEXT NOT NULL, name TEXT NOT NULL,
                date_modified INTEGER NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, error TEXT,
                vector BLOB, PRIMARY KEY (model_id, media_id))"""
        )
        db.execSQL(
            """CREATE TABLE stats (
                model_id TEXT PRIMARY KEY, images INTEGER NOT NULL, embed_ms REAL NOT NULL,
                prepare_ms REAL NOT NULL, runtime TEXT NOT NULL)"""
        )
    }

    override fun onUpgrade(db: SQLiteDatabase, oldVersion: Int, newVersion: Int) = Unit

    /** media id → "dateModified:size" of every photo this model has seen (embedded or failed). */
    fun seen(modelId: String): Map<Long, String> {
        val seen = HashMap<Long, String>()
        readableDatabase.rawQuery(
            "SELECT media_id, date_modified, size FROM photos WHERE model_id = ?", arrayOf(modelId)
        ).use { c ->
            while (c.moveToNext()) seen[c.getLong(0)] = version(c.getLong(1), c.getLong(2))
        }
        return seen
    }

    fun write(modelId: String, records: List<PhotoRecord>) {
        val db = writableDatabase
        db.beginTransaction()
        try {
            for (record in records) {
                val values = ContentValues().apply {
                    put("model_id", modelId)
                    put("media_id", record.photo.id)
                    put("uri", record.photo.uri.toString())
                    put("name", record.photo.name)
                    put("date_modified", record.photo.dateModified)
                    put("size", record.photo.size)
                    put("status", if (record.vector != null) "ok" else "failed")
                    put("error", record.error)
                    put("vector", record.vector?.let { toBytes(it) })
                }
                db.insertWithOnConflict("photos", null, values, SQLiteDatabase.CONFLICT_REPLACE)
            }
            db.setTransactionSuccessful()
        } finally {
            db.endTransaction()
        }
    }

    /** Forget photos that are no longer in the library. */
    fun removeMissing(modelId: String, present: Set<Long>) {
        val gone = seen(modelId).keys - present
        val db = writableDatabase
        db.beginTransaction()
        try {
            for (id in gone) db.delete("photos", "model_id = ? AND media_id = ?", arrayOf(modelId, id.toString()))
            db.setTransactionSuccessful()
        } finally {
            db.endTransaction()
        }
    }

    /** Every embedded photo of the model, in a stable order (media id), as a searchable index. */
    fun corpus(modelId: String, dim: Int): SearchCorpus {
        val uris = ArrayList<Uri>()
        val names = ArrayList<String>()
        val index = VectorIndex(dim)
        readableDatabase.rawQuery(
            "SELECT uri, name, vector FROM photos WHERE model_id = ? AND status = 'ok' ORDER BY media_id",
            arrayOf(modelId)
        ).use { c ->
            while (c.moveToNext()) {
                val vector = fromBytes(c.getBlob(2))
                if (vector.size != dim) continue
                index.add(vector)
                uris.add(Uri.parse(c.getString(0)))
                names.add(c.getString(1))
            }
        }
        return SearchCorpus(modelId, index, uris, names)
    }

    /** Add a batch's timings (total milliseconds for [images] images) to the model's running averages. */
    fun recordTimings(modelId: String, runtime: String, images: Int, embedMs: Double, prepareMs: Double) {
        if (images == 0) return
        val db = writableDatabase
        var before = 0L
        var embed = 0.0
        var prepare = 0.0
        db.rawQuery("SELECT images, embed_ms, prepare_ms, runtime FROM stats WHERE model_id = ?", arrayOf(modelId)).use { c ->
            // A different runtime's timings describe another engine: start the averages over.
            if (c.moveToFirst() && c.getString(3) == runtime) {
                before = c.getLong(0)
                embed = c.getDouble(1)
                prepare = c.getDouble(2)
            }
        }
        val n = before + images
        val values = ContentValues().apply {
            put("model_id", modelId)
            put("images", n)
            put("embed_ms", (embed * before + embedMs) / n)
            put("prepare_ms", (prepare * before + prepareMs) / n)
            put("runtime", runtime)
        }
        db.insertWithOnConflict("stats", null, values, SQLiteDatabase.CONFLICT_REPLACE)
    }

    fun stats(modelId: String): IndexStats {
        val db = readableDatabase
        val (indexed, failed) = db.rawQuery(
            "SELECT SUM(status = 'ok'), SUM(status = 'failed') FROM photos WHERE model_id = ?", arrayOf(modelId)
        ).use { c -> if (c.moveToFirst()) Pair(c.getLong(0), c.getLong(1)) else Pair(0L, 0L) }
        return db.rawQuery("SELECT images, embed_ms, prepare_ms, runtime FROM stats WHERE model_id = ?", arrayOf(modelId)).use { c ->
            if (c.moveToFirst()) IndexStats(indexed, failed, c.getLong(0), c.getDouble(1), c.getDouble(2), c.getString(3))
            else IndexStats(indexed, failed, 0, 0.0, 0.0, "")
        }
    }

    companion object {
        fun version(dateModified: Long, size: Long): String = "$dateModified:$size"

        private fun toBytes(vector: FloatArray): ByteArray {
            val buffer = ByteBuffer.allocate(vector.size * 4).order(ByteOrder.LITTLE_ENDIAN)
            for (v in vector) buffer.putFloat(v)
            return buffer.array()
        }

        private fun fromBytes(bytes: ByteArray): FloatArray {
            val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
            return FloatArray(buffer.remaining()).also { buffer.get(it) }
        }
    }
}
