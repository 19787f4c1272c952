package siglip2.core

import com.google.gson.JsonElement
import com.google.gson.JsonParseException
import com.google.gson.JsonParser
import java.io.File
import java.io.FileInputStream
import java.io.IOException
import java.security.MessageDigest

/**
 * Reading and verifying a bundle folder (`manifest.json` beside the tower files and the tokenizer), with
 * the rules of siglip2-sdk's `read_manifest` / `verify_bundle`: a file whose size or sha256 differs, a
 * bundle whose parity gate failed, another format version, or a path leaving the folder is refused.
 */
object Bundles {
    const val FORMAT_VERSION = 1
    const val MANIFEST_NAME = "manifest.json"
    @JvmField
    val RUNTIMES = listOf("torch", "onnxruntime", "litert", "executorch")
    @JvmField
    val FILE_ROLES = listOf("image_model", "text_model", "tokenizer")

    /** Parse and validate `dir/manifest.json` (files are not hashed; see [verify]). */
    @JvmStatic
    fun readManifest(dir: File): Manifest {
        val path = File(dir, MANIFEST_NAME)
        if (!path.isFile) throw BundleException("'$dir' is not a bundle: it has no $MANIFEST_NAME")
        val text = try {
            path.readText(Charsets.UTF_8)
        } catch (e: IOException) {
            throw BundleException("'$path' cannot be read: ${e.message}")
        }
        return parseManifest(text, path.path)
    }

    /** Parse and validate manifest text; `where` names the file in error messages. */
    @JvmStatic
    fun parseManifest(text: String, where: String): Manifest {
        val raw: JsonElement = try {
            JsonParser.parseString(text)
        } catch (e: JsonParseException) {
            throw BundleException("'$where' is not valid JSON: ${e.message}")
        }
        if (!raw.isJsonObject) throw BundleException("'$where' must hold a JSON object")
        val version = raw.asJsonObject.get("format_version")
        val isOne = version != null && version.isJsonPrimitive && version.asJsonPrimitive.isNumber &&
            version.asString == FORMAT_VERSION.toString()
        if (!isOne) {
            throw BundleException(
                "'$where' has bundle format ${version ?: "None"}; this app reads format $FORMAT_VERSION: " +
                    "re-export the bundle with a matching siglip2-sdk"
            )
        }
        val manifest = Manifest.fromJson(raw.asJsonObject, where)
        checkFields(manifest, where)
        return manifest
    }

    private fun checkFields(manifest: Manifest, where: String) {
        if (manifest.runtime !in RUNTIMES) {
            throw BundleException("'$where': unknown runtime '${manifest.runtime}' (known: ${RUNTIMES.joinToString()})")
        }
        val missing = FILE_ROLES.filter { it !in manifest.files }
        if (missing.isNotEmpty()) throw BundleException("'$where': no file listed for ${missing.joinToString()}")
        for ((role, entry) in manifest.files) {
            if (!isInside(entry.path)) {
                throw BundleException("'$where': file for $role ('${entry.path}') must be a path inside the bundle")
            }
        }
    }

    /** A relative POSIX path with no `..` part and at least one real part (PurePosixPath's rules). */
    private fun isInside(path: String): Boolean {
        if (path.startsWith("/")) return false
        val parts = path.split('/').filter { it.isNotEmpty() && it != "." }
        return parts.isNotEmpty() && ".." !in parts
    }

    /**
     * Read the manifest and check every file's size and sha256. A bundle whose export parity gate failed
     * is refused unless [allowFailed] (for inspecting it).
     */
    @JvmStatic
    @JvmOverloads
    fun verify(dir: File, allowFailed: Boolean = false): Manifest {
        val manifest = readManifest(dir)
        for ((role, entry) in manifest.files) {
            val file = File(dir, entry.path)
            if (!file.isFile) throw BundleException("bundle '$dir': $role file '${entry.path}' is missing")
            val size = file.length()
            if (size != entry.bytes || sha256(file) != entry.sha256) {
                throw BundleException(
                    "bundle '$dir': $role file '${entry.path}' does not match the manifest ($size bytes, " +
                        "expected ${entry.bytes}; sha256 differs): the bundle is damaged, re-export or re-copy it"
                )
            }
        }
        if (manifest.status != "ok" && !allowFailed) {
            throw BundleException(
                "bundle '$dir' is marked '${manifest.status}' (its export parity check did not pass): re-export it"
            )
        }
        return manifest
    }

    /** Lower-case hex sha256 of a file, read in 1 MiB chunks. */
    @JvmStatic
    fun sha256(file: File): String {
        val digest = MessageDigest.getInstance("SHA-256")
        val buffer = ByteArray(1 shl 20)
        FileInputStream(file).use { input ->
            while (true) {
                val n = input.read(buffer)
                if (n < 0) break
                digest.update(buffer, 0, n)
            }
        }
        val hex = StringBuilder(64)
        for (b in digest.digest()) {
            val v = b.toInt() and 0xff
            hex.append(HEX[v ushr 4]).append(HEX[v and 0xf])
        }
        return hex.toString()
    }

    private const val HEX = "0123456789abcdef"
}
