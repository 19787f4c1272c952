package siglip2.demo

import android.app.Application
import siglip2.demo.index.IndexNotifications

class DemoApplication : Application() {
    override fun onCreate() {
        super.onCreate()
        IndexNotifications.createChannel(this)
    }
}
