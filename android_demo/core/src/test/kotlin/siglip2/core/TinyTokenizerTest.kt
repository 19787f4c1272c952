package siglip2.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.StringReader

/** The tokenizer's rules on a hand-written tokenizer.json, one behaviour per test. */
class TinyTokenizerTest {
    private val vocab = listOf(
        "<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "a", "b", "c", "ab", "bc", "abc", "▁", "<0xC3>", "<0xA9>",
        "aa", "▁a", "x", "<", ">"
    )

    private fun json(merges: List<String>, fuseUnk: Boolean = true, normalizer: String = REPLACE): String {
        val vocabJson = vocab.withIndex().joinToString(",") { (i, token) -> "\"$token\": $i" }
        val mergesJson = merges.joinToString(",") { "\"$it\"" }
        return """
        {"version": "1.0", "truncation": null, "padding": null,
         "added_tokens": [
           {"id": 0, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
           {"id": 1, "content": "<eos>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
           {"id": 4, "content": "<mask>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}
         ],
         "normalizer": $normalizer, "pre_tokenizer": null, "post_processor": null, "decoder": null,
         "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                   "end_of_word_suffix": null, "fuse_unk": $fuseUnk, "byte_fallback": true, "ignore_merges": false,
                   "vocab": {$vocabJson}, "merges": [$mergesJson]}}
        """
    }

    private fun tokenizer(merges: List<String>, length: Int = 8, fuseUnk: Boolean = true): GemmaTokenizer =
        GemmaTokenizer.load(StringReader(json(merges, fuseUnk)), "tiny.json", length, true, 0, "<eos>")

    private fun ids(t: GemmaTokenizer, text: String): List<Int> = t.encode(text).toList().dropLast(1)

    @Test
    fun lowerRankMergesFirst() {
        // (b, c) outranks (a, b): a + bc, then a + bc -> abc
        assertEquals(listOf(10), ids(tokenizer(listOf("b c", "a b", "a bc")), "abc"))
        // (a, b) first leaves ab + c, which has no rule
        assertEquals(listOf(8, 7), ids(tokenizer(listOf("a b", "b c", "a bc")), "abc"))
    }

    @Test
    fun equalRanksMergeLeftmostFirst() {
        assertEquals(listOf(14, 5), ids(tokenizer(listOf("a a")), "aaa"))
    }

    @Test
    fun missingCharactersFallBackToUtf8Bytes() {
        assertEquals(listOf(12, 13), ids(tokenizer(emptyList()), "é"))
    }

    @Test
    fun charactersWithoutByteTokensFuseIntoOneUnknown() {
        assertEquals(listOf(5, 3, 5), ids(tokenizer(emptyList()), "a🙂🙂a"))
        assertEquals(listOf(5, 3, 3, 5), ids(tokenizer(emptyList(), fuseUnk = false), "a🙂🙂a"))
    }

    @Test
    fun spacesBecomeTheWordMark() {
        assertEquals(listOf(5, 11, 6), ids(tokenizer(emptyList()), "a b"))
        assertEquals(listOf(15), ids(tokenizer(listOf("▁ a")), " a"))
    }

    @Test
    fun nonSpecialAddedTokensMatchButSpecialOnesStayText() {
        val t = tokenizer(emptyList())
        assertEquals(listOf(5, 4, 6), ids(t, "a<mask>b"))
        val eos = ids(t, "<eos>")
        assertTrue("$eos", eos.size > 1 && 1 !in eos)
    }

    @Test
    fun uppercaseIsLoweredFirst() {
        assertEquals(ids(tokenizer(emptyList()), "abc"), ids(tokenizer(emptyList()), "ABC"))
    }

    @Test
    fun rowsAreEosTerminatedAndRightPadded() {
        assertArrayEquals(intArrayOf(5, 6, 1, 0, 0, 0, 0, 0), tokenizer(emptyList()).row("ab"))
    }

    @Test
    fun truncationKeepsEos() {
        val row = tokenizer(emptyList(), length = 4).row("abcabc")
        assertArrayEquals(intArrayOf(5, 6, 7, 1), row)
    }

    @Test
    fun emptyTextIsJustEos() {
        assertArrayEquals(intArrayOf(1, 0, 0, 0), tokenizer(emptyList(), length = 4).row(""))
    }

    @Test(expected = TokenizerException::class)
    fun unsupportedNormalizersAreRefused() {
        GemmaTokenizer.load(StringReader(json(emptyList(), normalizer = "{\"type\": \"NFKC\"}")), "tiny.json", 8, true, 0, "<eos>")
    }

    @Test(expected = TokenizerException::class)
    fun mergesOutsideTheVocabularyAreRefused() {
        tokenizer(listOf("c c"))
    }

    private companion object {
        const val REPLACE = "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"▁\"}"
    }
}
