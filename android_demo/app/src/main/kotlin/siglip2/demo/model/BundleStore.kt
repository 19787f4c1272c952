package siglip2.demo.model

import android.content.Context
import siglip2.core.BundleException
import siglip2.core.Bundles
import siglip2.core.Manifest
import java.io.File
import java.io.IOException

/** A bundle folder found on the phone: its manifest when it reads, else why it cannot be used. */
class InstalledBundle(val name: String, val dir: File, val manifest: Manifest?, val problem: String?) {
    val usable: Boolean get() = manifest != null && problem == null
}

/**
 * Where bundles live on the phone and which one is selected.
 *
 * Two sources, both holding `bundles/<name>/manifest.json` beside the tower files and tokenizer.json:
 * - the app's external files folder, for `adb push` (no rebuild):
 *   /sdcard/Android/data/siglip2.demo/files/bundles/<name>/
 * - the APK's assets (`app/src/main/assets/bundles/<name>/`), copied once into internal storage
 *   because the runtimes open model files by path.
 *
 * The phone runs LiteRT and ExecuTorch bundles; LiteRT is preferred when both are installed.
 */
class BundleStore(private val context: Context) {
    val pushedDir: File = File(context.getExternalFilesDir(null), "bundles")
    private val copiedDir = File(context.filesDir, "bundles")
    private val prefs = context.getSharedPreferences("bundles", Context.MODE_PRIVATE)

    var selectedName: String?
        get() = prefs.getString(KEY_SELECTED, null)
        set(value) {
            prefs.edit().putString(KEY_SELECTED, value).apply()
        }

    /** Every bundle found, asset bundles copied out first. Reads manifests; does not hash files. */
    fun list(): List<InstalledBundle> {
        copyAssetBundles()
        return listOf(pushedDir, copiedDir)
            .flatMap { root -> root.listFiles()?.filter { it.isDirectory }?.sortedBy { it.name } ?: emptyList() }
            .distinctBy { it.name }
            .map { describe(it) }
    }

    /** The selected bundle if usable, else the first LiteRT one, else the first usable one. */
    fun choose(bundles: List<InstalledBundle>): InstalledBundle? {
        val usable = bundles.filter { it.usable }
        return usable.firstOrNull { it.name == selectedName }
            ?: usable.firstOrNull { it.manifest?.runtime == "litert" }
            ?: usable.firstOrNull()
    }

    /**
     * The manifest after checking every file's size and sha256 (Bundles.verify). Hashing a 100 MB tower
     * takes a while on a phone, so a success is remembered until a file's size or time changes.
     */
    fun verify(bundle: InstalledBundle): Manifest {
        val fingerprint = fingerprint(bundle)
        val key = "verified:" + bundle.dir.path
        val manifest = bundle.manifest ?: throw BundleException(bundle.problem ?: "bundle '${bundle.name}' is unreadable")
        if (prefs.getString(key, null) == fingerprint) return manifest
        val verified = Bundles.verify(bundle.dir)
        prefs.edit().putString(key, fingerprint).apply()
        return verified
    }

    private fun describe(dir: File): InstalledBundle = try {
        val manifest = Bundles.readManifest(dir)
        val problem = when {
            manifest.runtime !in PHONE_RUNTIMES ->
                "made for ${manifest.runtime}; export it with `siglip2-sdk export ... --to tflite` (or executorch)"
            manifest.status != "ok" -> "marked '${manifest.status}': its export parity check did not pass"
            else -> null
        }
        InstalledBundle(dir.name, dir, manifest, problem)
    } catch (e: BundleException) {
        InstalledBundle(dir.name, dir, null, e.message)
    }

    private fun fingerprint(bundle: InstalledBundle): String {
        val manifest = File(bundle.dir, Bundles.MANIFEST_NAME)
        val files = listOf(manifest) + (bundle.manifest?.files?.values?.map { File(bundle.dir, it.path) } ?: emptyList())
        return files.joinToString(";") { "${it.path}:${it.length()}:${it.lastModified()}" }
    }

    /** Copy assets/bundles/<name> into internal storage when missing or when the APK carries another manifest. */
    private fun copyAssetBundles() {
        val assets = context.assets
        val names = try {
            assets.list(ASSET_ROOT)?.toList() ?: emptyList()
        } catch (e: IOException) {
            emptyList()
        }
        for (name in names) {
            val target = File(copiedDir, name)
            val packaged = readAsset("$ASSET_ROOT/$name/${Bundles.MANIFEST_NAME}") ?: continue
            val installed = File(target, Bundles.MANIFEST_NAME)
            if (installed.isFile && installed.readText() == packaged) continue
            val staging = File(copiedDir, ".$name.partial")
            staging.deleteRecursively()
            copyAssetTree("$ASSET_ROOT/$name", staging)
            target.deleteRecursively()
            if (!staging.renameTo(target)) throw IOException("cannot move the copied bundle into $target")
        }
    }

    private fun readAsset(path: String): String? = try {
        context.assets.open(path).use { it.readBytes().toString(Charsets.UTF_8) }
    } catch (e: IOException) {
        null
    }

    private fun copyAssetTree(path: String, target: File) {
        val children = context.assets.list(path) ?: emptyArray()
        if (children.isEmpty()) {
            target.parentFile?.mkdirs()
            context.assets.open(path).use { input -> target.outputStream().use { input.copyTo(it, 1 shl 20) } }
            return
        }
        target.mkdirs()
        for (child in children) copyAssetTree("$path/$child", File(target, child))
    }

    companion object {
        val PHONE_RUNTIMES = listOf("litert", "executorch")
        private const val ASSET_ROOT = "bundles"
        private const val KEY_SELECTED = "selected"
    }
}
