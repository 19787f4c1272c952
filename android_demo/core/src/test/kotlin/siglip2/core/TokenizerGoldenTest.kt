package siglip2.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.BeforeClass
import org.junit.Test
import java.io.File

/** Token ids identical to the SDK's Tokenizer (Hugging Face tokenizers) on the Gemma tokenizer.json. */
class TokenizerGoldenTest {
    private class Case(val source: String, val text: String, val ids: IntArray, val row: IntArray?, val shortRow: IntArray?)

    companion object {
        private lateinit var cases: List<Case>
        private lateinit var tokenizer: GemmaTokenizer
        private lateinit var short: GemmaTokenizer

        @BeforeClass
        @JvmStatic
        fun load() {
            val golden = Goldens.json("tokens.json").asJsonObject
            fun ints(key: String, case: com.google.gson.JsonObject): IntArray? =
                case.getAsJsonArray(key)?.let { array -> IntArray(array.size()) { array.get(it).asInt } }
            cases = golden.getAsJsonArray("cases").map {
                val case = it.asJsonObject
                Case(case.get("source").asString, case.get("text").asString, ints("ids", case)!!, ints("row", case), ints("short_row", case))
            }
            val file = File(golden.get("tokenizer").asString)
            val padId = golden.get("pad_id").asInt
            tokenizer = GemmaTokenizer.load(file, TextSpec(golden.get("length").asInt, padId, golden.get("eos_id").asInt, true))
            short = GemmaTokenizer.load(file, TextSpec(golden.get("short_length").asInt, padId, golden.get("eos_id").asInt, true))
            assertEquals("golden tokenizer sha256", golden.get("tokenizer_sha256").asString, Bundles.sha256(file))
        }

        private fun show(ids: IntArray?): String = ids?.joinToString(prefix = "[", postfix = "]") ?: "null"
    }

    @Test
    fun goldensCoverAThousandMultilingualCaptions() {
        assertTrue("only ${cases.size} captions", cases.size >= 1000)
        val languages = cases.map { it.source }.filter { it.startsWith("emoji-") }.toSet()
        assertTrue("languages: $languages", languages.size >= 14)
    }

    @Test
    fun idsMatchThePythonTokenizerOnEveryCaption() {
        val wrong = cases.filter { !it.ids.contentEquals(tokenizer.encode(it.text)) }
        val report = wrong.take(8).joinToString("\n") {
            "  ${it.source} '${it.text}': expected ${show(it.ids)}, got ${show(tokenizer.encode(it.text))}"
        }
        assertEquals("${wrong.size} of ${cases.size} captions tokenize differently:\n$report", 0, wrong.size)
        println("tokenizer: ${cases.size} captions, ids identical to the Python SDK")
    }

    @Test
    fun rowsMatchThePythonLayoutAtBothLengths() {
        val withRows = cases.filter { it.row != null }
        assertTrue(withRows.size > 100)
        for (case in withRows) {
            assertEquals("row of '${case.text}'", show(case.row), show(tokenizer.row(case.text)))
            assertEquals("length-16 row of '${case.text}'", show(case.shortRow), show(short.row(case.text)))
        }
    }

    @Test
    fun truncationKeepsEosLast() {
        val long = cases.first { it.ids.size > 2 * tokenizer.length }
        val row = tokenizer.row(long.text)
        assertEquals(tokenizer.length, row.size)
        assertEquals(tokenizer.eosId, row.last())
        assertEquals(show(long.ids.copyOf(tokenizer.length - 1)), show(row.copyOf(tokenizer.length - 1)))
    }

    @Test
    fun specialTokensInTextStayText() {
        val ids = tokenizer.encode("<eos>")
        assertTrue(show(ids), ids.size > 2)
        assertEquals(1, ids.count { it == tokenizer.eosId })
    }
}
