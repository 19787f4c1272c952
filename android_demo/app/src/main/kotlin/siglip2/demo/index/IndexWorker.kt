package siglip2.demo.index

import android.content.Context
import android.content.pm.ServiceInfo
import android.os.Build
import android.os.SystemClock
import android.util.Log
import androidx.work.CoroutineWorker
import androidx.work.ExistingWorkPolicy
import androidx.work.ForegroundInfo
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import androidx.work.workDataOf
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext
import siglip2.core.Siglip2Exception
import siglip2.demo.model.BundleStore
import siglip2.demo.model.SiglipModel
import java.io.IOException

/**
 * Embeds the photo library in the background: new and changed photos only (by MediaStore id, date and
 * size), one model batch per database transaction, progress in a notification. Stopped or killed, it
 * resumes where it was on the next run, because finished photos are already in the index.
 */
class IndexWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {
    override suspend fun doWork(): Result = withContext(Dispatchers.Default) {
        val store = BundleStore(applicationContext)
        val bundle = store.list().firstOrNull { it.name == inputData.getString(KEY_BUNDLE) }
            ?: return@withContext failure("the selected bundle is gone; pick another one")
        val manifest = try {
            store.verify(bundle)
        } catch (e: Siglip2Exception) {
            return@withContext failure(e.message ?: "bundle cannot be used")
        }
        val db = PhotoDb(applicationContext)
        SiglipModel(bundle.name, bundle.dir, manifest, SiglipModel.defaultThreads()).use { model ->
            val library = try {
                MediaLibrary.photos(applicationContext)
            } catch (e: SecurityException) {
                return@withContext failure("no permission to read photos: allow photo access in the app")
            }
            db.removeMissing(manifest.modelId, library.map { it.id }.toSet())
            val seen = db.seen(manifest.modelId)
            val todo = library.filter { seen[it.id] != PhotoDb.version(it.dateModified, it.size) }
            runInForeground(model.name, 0, todo.size)
            try {
                index(model, db, todo)
            } catch (e: Siglip2Exception) {
                return@withContext failure(e.message ?: "indexing failed")
            }
        }
        Result.success()
    }

    private suspend fun index(model: SiglipModel, db: PhotoDb, todo: List<MediaPhoto>) {
        val modelId = model.manifest.modelId
        val batch = model.imageBatch
        val buffer = FloatArray(batch * model.pixelsPerImage)
        var done = 0
        for (chunk in todo.chunked(batch)) {
            if (isStopped) return
            val records = ArrayList<PhotoRecord>()
            val decoded = ArrayList<MediaPhoto>()
            val prepareStart = SystemClock.elapsedRealtimeNanos()
            for (photo in chunk) {
                try {
                    val image = PhotoDecoder.decode(applicationContext.contentResolver, photo.uri)
                    model.preprocessInto(image, buffer, decoded.size)
                    decoded.add(photo)
                } catch (e: IOException) {
                    records.add(PhotoRecord(photo, null, e.message ?: "cannot read the photo"))
                } catch (e: SecurityException) {
                    records.add(PhotoRecord(photo, null, "no permission to read the photo"))
                } catch (e: OutOfMemoryError) {
                    records.add(PhotoRecord(photo, null, "too large to decode on this phone"))
                }
            }
            val prepareMs = (SystemClock.elapsedRealtimeNanos() - prepareStart) / 1e6
            if (decoded.isNotEmpty()) {
                val embedStart = SystemClock.elapsedRealtimeNanos()
                val vectors = model.embedImages(buffer, decoded.size)
                val embedMs = (SystemClock.elapsedRealtimeNanos() - embedStart) / 1e6
                decoded.forEachIndexed { i, photo -> records.add(PhotoRecord(photo, vectors[i], null)) }
                db.recordTimings(modelId, model.runtimeLabel, decoded.size, embedMs, prepareMs)
            }
            db.write(modelId, records)
            done += chunk.size
            setProgress(workDataOf(KEY_DONE to done, KEY_TOTAL to todo.size))
            runInForeground(model.name, done, todo.size)
        }
    }

    /** Promote the worker to a foreground service with the progress notification; Android may refuse
     *  (e.g. started from the background on Android 14+), and indexing then goes on as ordinary work. */
    private suspend fun runInForeground(model: String, done: Int, total: Int) {
        val notification = IndexNotifications.progress(applicationContext, model, done, total)
        val info = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            ForegroundInfo(IndexNotifications.ID, notification, ServiceInfo.FOREGROUND_SERVICE_TYPE_DATA_SYNC)
        } else {
            ForegroundInfo(IndexNotifications.ID, notification)
        }
        try {
            setForeground(info)
        } catch (e: IllegalStateException) {
            Log.i(TAG, "indexing without a foreground notification: ${e.message}")
        }
    }

    private fun failure(message: String): Result = Result.failure(workDataOf(KEY_ERROR to message))

    companion object {
        const val WORK_NAME = "index-photos"
        private const val TAG = "IndexWorker"
        const val KEY_BUNDLE = "bundle"
        const val KEY_DONE = "done"
        const val KEY_TOTAL = "total"
        const val KEY_ERROR = "error"

        /** Start indexing with the named bundle unless a run is already going. */
        fun start(context: Context, bundleName: String) {
            val request = OneTimeWorkRequestBuilder<IndexWorker>()
                .setInputData(workDataOf(KEY_BUNDLE to bundleName))
                .build()
            WorkManager.getInstance(context).enqueueUniqueWork(WORK_NAME, ExistingWorkPolicy.KEEP, request)
        }
    }
}
