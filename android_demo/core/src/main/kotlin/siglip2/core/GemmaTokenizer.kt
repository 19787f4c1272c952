package siglip2.core

import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonParser
import com.google.gson.stream.JsonReader
import com.google.gson.stream.JsonToken
import java.io.BufferedReader
import java.io.File
import java.io.FileInputStream
import java.io.IOException
import java.io.InputStreamReader
import java.io.Reader

/**
 * SigLIP 2 text tokenization with big_vision semantics on the bundle's `tokenizer.json`, giving the same
 * ids as siglip2-sdk's `core/tokenizer.py` (Hugging Face `tokenizers` underneath):
 *
 * lowercase as Python does → split around added tokens (special ones stay text) → normalize (Gemma:
 * " " → "▁") → BPE with byte fallback → append EOS (no BOS) → truncate keeping EOS last → right-pad.
 */
class GemmaTokenizer private constructor(
    private val splitter: AddedTokenSplitter,
    private val normalizedSplitter: AddedTokenSplitter,
    private val normalizers: List<Normalizer>,
    private val model: BpeModel,
    /** Tokens per row; the text tower pools position `length - 1`. */
    val length: Int,
    val padId: Int,
    val eosId: Int,
    val lowercase: Boolean,
    /** Vocabulary size including added tokens, as `tokenizers` counts it. */
    val vocabSize: Int
) {
    init {
        if (length < 1) throw IllegalArgumentException("length must be at least 1 (room for EOS), got $length")
    }

    /** The ids of one text with lowercasing and EOS but no truncation or padding (for inspection). */
    fun encode(text: String): IntArray {
        val ids = IntList(text.length + 2)
        encodeInto(text, ids)
        ids.add(eosId)
        return ids.toIntArray()
    }

    /** One row of exactly [length] ids: EOS-terminated, truncated keeping EOS, right-padded with [padId]. */
    fun row(text: String): IntArray {
        val ids = IntList(text.length + 2)
        encodeInto(text, ids)
        val row = IntArray(length) { padId }
        val kept = minOf(ids.size, length - 1)
        for (i in 0 until kept) row[i] = ids[i]
        row[kept] = eosId
        return row
    }

    fun rows(texts: List<String>): Array<IntArray> = Array(texts.size) { row(texts[it]) }

    private fun encodeInto(text: String, out: IntList) {
        val input = if (lowercase) PythonCase.lower(text) else text
        splitter.split(input, { piece ->
            var normalized = piece
            for (normalizer in normalizers) normalized = normalizer.normalize(normalized)
            normalizedSplitter.split(normalized, { word -> model.tokenize(word, out) }, { out.add(it) })
        }, { out.add(it) })
    }

    companion object {
        /** The tokenizer of a bundle, laid out by its manifest; refuses an EOS id other than the manifest's. */
        @JvmStatic
        fun load(file: File, text: TextSpec): GemmaTokenizer {
            val tokenizer = load(file, text.length, text.lowercase, text.padId)
            if (tokenizer.eosId != text.eosId) {
                throw TokenizerException("'$file': tokenizer EOS id ${tokenizer.eosId} != manifest's ${text.eosId}")
            }
            return tokenizer
        }

        @JvmStatic
        @JvmOverloads
        fun load(file: File, length: Int = 64, lowercase: Boolean = true, padId: Int = 0, eosToken: String = "<eos>"): GemmaTokenizer {
            if (!file.isFile) throw TokenizerException("tokenizer file '$file' does not exist")
            try {
                BufferedReader(InputStreamReader(FileInputStream(file), Charsets.UTF_8), 1 shl 16).use {
                    return load(it, file.path, length, lowercase, padId, eosToken)
                }
            } catch (e: IOException) {
                throw TokenizerException("tokenizer file '$file' cannot be read: ${e.message}")
            }
        }

        /** Read a Hugging Face `tokenizer.json` from [reader]; `where` names it in error messages. */
        @JvmStatic
        fun load(reader: Reader, where: String, length: Int, lowercase: Boolean, padId: Int, eosToken: String): GemmaTokenizer {
            val parsed = try {
                TokenizerJson(where).read(JsonReader(reader))
            } catch (e: IllegalStateException) {
                throw TokenizerException("tokenizer file '$where' is not a tokenizer.json: ${e.message}")
            } catch (e: NumberFormatException) {
                throw TokenizerException("tokenizer file '$where' is not a tokenizer.json: ${e.message}")
            } catch (e: com.google.gson.JsonParseException) {
                throw TokenizerException("tokenizer file '$where' is not a tokenizer.json: ${e.message}")
            }
            val eosId = parsed.tokenToId(eosToken) ?: throw TokenizerException(
                "tokenizer file '$where' has no token '$eosToken'; it is not the Gemma tokenizer SigLIP 2 uses"
            )
            return GemmaTokenizer(
                AddedTokenSplitter(parsed.added.filter { !it.normalized }, encodeSpecialTokens = true),
                AddedTokenSplitter(parsed.added.filter { it.normalized }, encodeSpecialTokens = true),
                parsed.normalizers,
                parsed.model(),
                length,
                padId,
                eosId,
                lowercase,
                parsed.vocabSize()
            )
        }
    }
}

/** A `tokenizer.json` normalizer step (only the ones Gemma-style tokenizers use are implemented). */
internal interface Normalizer {
    fun normalize(text: String): String
}

private class ReplaceNormalizer(private val pattern: String, private val content: String) : Normalizer {
    override fun normalize(text: String): String = text.replace(pattern, content)
}

private class PrependNormalizer(private val prefix: String) : Normalizer {
    override fun normalize(text: String): String = if (text.isEmpty()) text else prefix + text
}

/** Streaming reader for the parts of tokenizer.json that encoding needs (the Gemma file is 17 MB). */
private class TokenizerJson(private val where: String) {
    val vocab = HashMap<String, Int>(1 shl 19)
    val added = ArrayList<AddedToken>()
    val normalizers = ArrayList<Normalizer>()
    private var mergePairs = ArrayList<String>() // read before the vocab: resolved at the end
    private var merges: MergeTable? = null
    private var mergeCount = 0
    private var unkToken: String? = null
    private var byteFallback = false
    private var fuseUnk = false
    private var ignoreMerges = false

    fun read(json: JsonReader): TokenizerJson {
        json.beginObject()
        while (json.hasNext()) {
            when (json.nextName()) {
                "added_tokens" -> readAddedTokens(JsonParser.parseReader(json))
                "normalizer" -> readNormalizer(JsonParser.parseReader(json))
                "pre_tokenizer" -> requireNull(JsonParser.parseReader(json), "pre_tokenizer")
                "model" -> readModel(json)
                else -> json.skipValue()
            }
        }
        json.endObject()
        if (merges == null) resolveMerges()
        return this
    }

    fun tokenToId(token: String): Int? = added.firstOrNull { it.content == token }?.id ?: vocab[token]

    fun vocabSize(): Int = vocab.size + added.count { it.content !in vocab }

    fun model(): BpeModel {
        val unkId = unkToken?.let {
            vocab[it] ?: throw TokenizerException("'$where': unk_token '$it' is not in the vocabulary")
        }
        val table = merges ?: throw TokenizerException("'$where' has no BPE vocabulary")
        return BpeModel(vocab, table, unkId, byteFallback, fuseUnk, ignoreMerges)
    }

    private fun readAddedTokens(element: JsonElement) {
        for (entry in element.asJsonArray) {
            val token = entry.asJsonObject
            for (flag in listOf("single_word", "lstrip", "rstrip")) {
                if (token.get(flag)?.asBoolean == true) unsupported("added token with $flag=true")
            }
            added.add(
                AddedToken(
                    token.get("id").asInt,
                    token.get("content").asString,
                    token.get("special")?.asBoolean ?: false,
                    token.get("normalized")?.asBoolean ?: true
                )
            )
        }
    }

    private fun readNormalizer(element: JsonElement) {
        if (element.isJsonNull) return
        val normalizer = element.asJsonObject
        when (val type = normalizer.get("type")?.asString) {
            "Sequence" -> for (step in normalizer.getAsJsonArray("normalizers")) readNormalizer(step)
            "Replace" -> {
                val pattern = normalizer.getAsJsonObject("pattern")
                val literal = pattern.get("String") ?: unsupported("Replace normalizer with a regex pattern")
                normalizers.add(ReplaceNormalizer(literal.asString, normalizer.get("content").asString))
            }
            "Prepend" -> normalizers.add(PrependNormalizer(normalizer.get("prepend").asString))
            else -> unsupported("normalizer '$type'")
        }
    }

    private fun readModel(json: JsonReader) {
        json.beginObject()
        while (json.hasNext()) {
            when (json.nextName()) {
                "type" -> json.nextString().let { if (it != "BPE") unsupported("model type '$it' (only BPE)") }
                "vocab" -> readVocab(json)
                "merges" -> readMerges(json)
                "unk_token" -> unkToken = nullableString(json)
                "byte_fallback" -> byteFallback = json.nextBoolean()
                "fuse_unk" -> fuseUnk = json.nextBoolean()
                "ignore_merges" -> ignoreMerges = json.nextBoolean()
                "dropout" -> nullableDouble(json)?.let { if (it > 0.0) unsupported("BPE dropout $it") }
                "continuing_subword_prefix", "end_of_word_suffix" ->
                    nullableString(json)?.let { if (it.isNotEmpty()) unsupported("BPE subword prefix/suffix '$it'") }
                else -> json.skipValue()
            }
        }
        json.endObject()
    }

    private fun readVocab(json: JsonReader) {
        json.beginObject()
        while (json.hasNext()) {
            val token = json.nextName()
            vocab[token] = json.nextInt()
        }
        json.endObject()
    }

    /** Merges as "a b" strings (legacy) or ["a", "b"] pairs; rank is the position in the list. */
    private fun readMerges(json: JsonReader) {
        json.beginArray()
        while (json.hasNext()) {
            if (json.peek() == JsonToken.BEGIN_ARRAY) {
                json.beginArray()
                val left = json.nextString()
                val right = json.nextString()
                json.endArray()
                mergePairs.add(left)
                mergePairs.add(right)
            } else {
                val merge = json.nextString()
                val space = merge.indexOf(' ')
                if (space < 0 || merge.indexOf(' ', space + 1) >= 0) {
                    throw TokenizerException("'$where': merge '$merge' is not two tokens separated by one space")
                }
                mergePairs.add(merge.substring(0, space))
                mergePairs.add(merge.substring(space + 1))
            }
            if (vocab.isNotEmpty() && mergePairs.size >= 2 * 4096) resolveMerges()
        }
        json.endArray()
        resolveMerges()
    }

    /** Turn the pending merge strings into id pairs (once the vocabulary is known). */
    private fun resolveMerges() {
        if (vocab.isEmpty()) return
        val table = merges ?: MergeTable().also { merges = it }
        var i = 0
        while (i < mergePairs.size) {
            val left = mergePairs[i]
            val right = mergePairs[i + 1]
            val leftId = vocab[left] ?: outOfVocabulary(left)
            val rightId = vocab[right] ?: outOfVocabulary(right)
            val newId = vocab[left + right] ?: outOfVocabulary(left + right)
            table.put(leftId, rightId, mergeCount, newId)
            mergeCount++
            i += 2
        }
        mergePairs = ArrayList()
    }

    private fun outOfVocabulary(token: String): Nothing =
        throw TokenizerException("'$where': merge token '$token' is not in the vocabulary")

    private fun unsupported(what: String): Nothing =
        throw TokenizerException("'$where' uses $what, which this tokenizer does not implement")

    private fun requireNull(element: JsonElement, what: String) {
        if (!element.isJsonNull) unsupported("a $what (${(element as? JsonObject)?.get("type") ?: element})")
    }

    private fun nullableString(json: JsonReader): String? =
        if (json.peek() == JsonToken.NULL) json.nextNull().let { null } else json.nextString()

    private fun nullableDouble(json: JsonReader): Double? =
        if (json.peek() == JsonToken.NULL) json.nextNull().let { null } else json.nextDouble()
}
