package siglip2.core

import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonPrimitive

/**
 * The bundle manifest (`manifest.json`), field for field as siglip2-sdk's `core/bundle.py` writes it.
 * Parsing follows the SDK's reader: unknown keys, missing required keys and out-of-range values are
 * refused, so a newer manifest is never half-read.
 */
class Manifest(
    val modelId: String,
    val runtime: String,
    val precision: String,
    val quantization: String,
    val embedDim: Int,
    val image: ImageSpec,
    val text: TextSpec,
    val logitScale: Double,
    val logitBias: Double,
    val files: Map<String, BundleFile>,
    /** A fixed batch per tower (TFLite), or null where the batch axis is dynamic. */
    val batchSize: TowerSizes,
    /** The largest batch a dynamic-batch tower accepts (null: no bound). */
    val maxBatch: TowerSizes,
    /** Figures measured at export against the float model, as JSON text per key (for display). */
    val parity: Map<String, String>,
    val status: String,
    /** A pruned token table ({"kept", "of", ...}, JSON text per key); empty: the full vocabulary. */
    val vocabulary: Map<String, String>,
    val formatVersion: Int,
    val createdBy: String,
    /** Delegate partitions per tower (ExecuTorch's XNNPACK subgraphs), JSON text per key; empty: not recorded. */
    val delegatePartitions: Map<String, String> = emptyMap()
) {
    companion object {
        private val REQUIRED = listOf(
            "model_id", "runtime", "precision", "quantization", "embed_dim", "image", "text",
            "logit_scale", "logit_bias", "files"
        )
        private val OPTIONAL =
            listOf(
                "batch_size", "max_batch", "parity", "status", "vocabulary", "format_version", "created_by",
                "weights_digest", "delegate_partitions"
            )

        /** Parse an already decoded manifest object; `where` names the file in error messages. */
        @JvmStatic
        fun fromJson(json: JsonObject, where: String): Manifest {
            val unknown = json.keySet().filter { it !in REQUIRED && it !in OPTIONAL }.sorted()
            if (unknown.isNotEmpty()) malformed(where, "unexpected keys ${unknown.joinToString()}")
            val missing = REQUIRED.filter { !json.has(it) }
            if (missing.isNotEmpty()) malformed(where, "missing keys ${missing.joinToString()}")
            return Manifest(
                modelId = string(json, "model_id", where),
                runtime = string(json, "runtime", where),
                precision = string(json, "precision", where),
                quantization = string(json, "quantization", where),
                embedDim = int(json.get("embed_dim"), "embed_dim", where),
                image = ImageSpec.fromJson(obj(json, "image", where), where),
                text = TextSpec.fromJson(obj(json, "text", where), where),
                logitScale = number(json.get("logit_scale"), "logit_scale", where),
                logitBias = number(json.get("logit_bias"), "logit_bias", where),
                files = files(obj(json, "files", where), where),
                batchSize = TowerSizes.fromJson(json.get("batch_size"), "batch_size", where),
                maxBatch = TowerSizes.fromJson(json.get("max_batch"), "max_batch", where),
                parity = jsonTexts(json.get("parity"), "parity", where),
                status = if (json.has("status")) string(json, "status", where) else "ok",
                vocabulary = jsonTexts(json.get("vocabulary"), "vocabulary", where),
                formatVersion = int(json.get("format_version"), "format_version", where),
                createdBy = if (json.has("created_by")) string(json, "created_by", where) else "",
                delegatePartitions = jsonTexts(json.get("delegate_partitions"), "delegate_partitions", where)
            )
        }

        private fun files(json: JsonObject, where: String): Map<String, BundleFile> {
            val files = LinkedHashMap<String, BundleFile>()
            for ((role, entry) in json.entrySet()) {
                if (!entry.isJsonObject) malformed(where, "files.$role must be an object")
                files[role] = BundleFile.fromJson(entry.asJsonObject, "files.$role", where)
            }
            return files
        }

        /** A free-form object kept as JSON text per key (the app only displays it). */
        private fun jsonTexts(element: JsonElement?, what: String, where: String): Map<String, String> {
            if (element == null || element.isJsonNull) return emptyMap()
            if (!element.isJsonObject) malformed(where, "$what must be an object")
            val texts = LinkedHashMap<String, String>()
            for ((key, value) in element.asJsonObject.entrySet()) texts[key] = value.toString()
            return texts
        }
    }
}

/** The exact pixel transform the checkpoint was trained with (`core/preprocess.py` ImagePreprocessing). */
class ImageSpec(
    val height: Int,
    val width: Int,
    val resample: String,
    val mean: DoubleArray,
    val std: DoubleArray,
    val rescaleFactor: Double
) {
    init {
        if (height <= 0 || width <= 0) throw IllegalArgumentException("size must be two positive integers")
        if (resample !in PilResize.FILTERS) {
            throw IllegalArgumentException("unknown resample '$resample'; use one of ${PilResize.FILTERS.joinToString()}")
        }
        if (mean.size != 3 || std.size != 3) throw IllegalArgumentException("mean and std need one value per RGB channel")
        if (mean.any { !it.isFinite() } || std.any { !(it.isFinite() && it > 0) }) {
            throw IllegalArgumentException("mean must be finite and std positive")
        }
        if (!(rescaleFactor.isFinite() && rescaleFactor > 0)) throw IllegalArgumentException("rescale_factor must be positive")
    }

    companion object {
        private val KEYS = listOf("size", "resample", "mean", "std", "rescale_factor")

        @JvmStatic
        fun fromJson(json: JsonObject, where: String): ImageSpec {
            val unknown = json.keySet().filter { it !in KEYS }.sorted()
            if (unknown.isNotEmpty()) malformed(where, "unknown image preprocessing keys ${unknown.joinToString()}")
            val size = json.get("size") ?: malformed(where, "image preprocessing needs 'size' as [height, width]")
            if (!size.isJsonArray || size.asJsonArray.size() != 2) malformed(where, "image.size must be [height, width]")
            val mean = numbers(json.get("mean"), "image.mean", where) ?: doubleArrayOf(0.5, 0.5, 0.5)
            val std = numbers(json.get("std"), "image.std", where) ?: doubleArrayOf(0.5, 0.5, 0.5)
            val resample = json.get("resample")
            try {
                return ImageSpec(
                    height = int(size.asJsonArray.get(0), "image.size", where),
                    width = int(size.asJsonArray.get(1), "image.size", where),
                    resample = if (resample == null) "bilinear" else string(json, "resample", where).toLowerCaseAscii(),
                    mean = mean,
                    std = std,
                    rescaleFactor = json.get("rescale_factor")?.let { number(it, "image.rescale_factor", where) } ?: 1.0 / 255
                )
            } catch (e: IllegalArgumentException) {
                malformed(where, "ValueError: ${e.message}")
            }
        }

        private fun numbers(element: JsonElement?, what: String, where: String): DoubleArray? {
            if (element == null) return null
            if (!element.isJsonArray) malformed(where, "$what must be a list of numbers")
            val array = element.asJsonArray
            return DoubleArray(array.size()) { number(array.get(it), what, where) }
        }
    }
}

/** big_vision text layout: lowercase, EOS appended and kept when truncating, right-pad to `length`. */
class TextSpec(val length: Int = 64, val padId: Int = 0, val eosId: Int = 1, val lowercase: Boolean = true) {
    companion object {
        private val KEYS = listOf("length", "pad_id", "eos_id", "lowercase")

        @JvmStatic
        fun fromJson(json: JsonObject, where: String): TextSpec {
            val unknown = json.keySet().filter { it !in KEYS }.sorted()
            if (unknown.isNotEmpty()) malformed(where, "unexpected text keys ${unknown.joinToString()}")
            val lowercase = json.get("lowercase")
            if (lowercase != null && !(lowercase.isJsonPrimitive && lowercase.asJsonPrimitive.isBoolean)) {
                malformed(where, "text.lowercase must be true or false")
            }
            return TextSpec(
                length = json.get("length")?.let { int(it, "text.length", where) } ?: 64,
                padId = json.get("pad_id")?.let { int(it, "text.pad_id", where) } ?: 0,
                eosId = json.get("eos_id")?.let { int(it, "text.eos_id", where) } ?: 1,
                lowercase = lowercase?.asBoolean ?: true
            )
        }
    }
}

/** One file of the bundle: its path inside the folder (POSIX separators), sha256 and size. */
class BundleFile(val path: String, val sha256: String, val bytes: Long) {
    companion object {
        private val KEYS = listOf("path", "sha256", "bytes")

        @JvmStatic
        fun fromJson(json: JsonObject, what: String, where: String): BundleFile {
            val unknown = json.keySet().filter { it !in KEYS }.sorted()
            if (unknown.isNotEmpty()) malformed(where, "$what has unexpected keys ${unknown.joinToString()}")
            val missing = KEYS.filter { !json.has(it) }
            if (missing.isNotEmpty()) malformed(where, "$what misses ${missing.joinToString()}")
            val bytes = json.get("bytes")
            if (!isInteger(bytes)) malformed(where, "$what.bytes must be an integer")
            return BundleFile(string(json, "path", where), string(json, "sha256", where), bytes.asLong)
        }
    }
}

/** A per-tower number (fixed batch or bound), absent or null where there is none. */
class TowerSizes(val image: Int?, val text: Int?) {
    companion object {
        @JvmStatic
        fun fromJson(element: JsonElement?, what: String, where: String): TowerSizes {
            if (element == null || element.isJsonNull) return TowerSizes(null, null)
            if (!element.isJsonObject) malformed(where, "$what must be an object")
            val json = element.asJsonObject
            fun size(tower: String): Int? {
                val value = json.get(tower)
                return if (value == null || value.isJsonNull) null else int(value, "$what.$tower", where)
            }
            return TowerSizes(size("image"), size("text"))
        }
    }
}

private fun malformed(where: String, reason: String): Nothing =
    throw BundleException("'$where' is malformed: $reason")

private fun isInteger(element: JsonElement?): Boolean {
    if (element == null || !element.isJsonPrimitive || !element.asJsonPrimitive.isNumber) return false
    val text = element.asJsonPrimitive.asString
    return text.none { it == '.' || it == 'e' || it == 'E' }
}

private fun int(element: JsonElement?, what: String, where: String): Int {
    if (!isInteger(element)) malformed(where, "$what must be an integer, got $element")
    return element!!.asInt
}

private fun number(element: JsonElement?, what: String, where: String): Double {
    if (element == null || !element.isJsonPrimitive || !(element as JsonPrimitive).isNumber) {
        malformed(where, "$what must be a number, got $element")
    }
    return element.asDouble
}

private fun string(json: JsonObject, key: String, where: String): String {
    val element = json.get(key)
    if (element == null || !element.isJsonPrimitive || !element.asJsonPrimitive.isString) {
        malformed(where, "$key must be a string, got $element")
    }
    return element.asString
}

private fun obj(json: JsonObject, key: String, where: String): JsonObject {
    val element = json.get(key)
    if (element == null || !element.isJsonObject) malformed(where, "$key must be an object")
    return element.asJsonObject
}

/** ASCII-only lowercasing for identifiers such as filter names (never locale-dependent). */
internal fun String.toLowerCaseAscii(): String {
    val out = StringBuilder(length)
    for (c in this) out.append(if (c in 'A'..'Z') c + ('a' - 'A') else c)
    return out.toString()
}
