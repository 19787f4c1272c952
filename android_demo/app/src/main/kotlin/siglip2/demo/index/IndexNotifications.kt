package siglip2.demo.index

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.content.Context
import androidx.core.app.NotificationCompat
import siglip2.demo.R

/** The progress notification the indexing worker shows while it runs in the foreground. */
object IndexNotifications {
    const val CHANNEL = "indexing"
    const val ID = 7

    fun createChannel(context: Context) {
        val channel = NotificationChannel(CHANNEL, context.getString(R.string.channel_indexing), NotificationManager.IMPORTANCE_LOW)
        channel.description = context.getString(R.string.channel_indexing_description)
        context.getSystemService(NotificationManager::class.java).createNotificationChannel(channel)
    }

    fun progress(context: Context, model: String, done: Int, total: Int): Notification =
        NotificationCompat.Builder(context, CHANNEL)
            .setSmallIcon(R.drawable.ic_launcher)
            .setContentTitle("Indexing photos with $model")
            .setContentText(if (total == 0) "Looking for new photos" else "$done of $total photos")
            .setProgress(total, done, total == 0)
            .setOngoing(true)
            .setOnlyAlertOnce(true)
            .build()
}
