package siglip2.core

/** One entry of `added_tokens` in tokenizer.json. */
internal class AddedToken(val id: Int, val content: String, val special: Boolean, val normalized: Boolean)

/**
 * Splits text around added tokens the way `tokenizers`' AddedVocabulary does: leftmost-longest matches of
 * every added token (an Aho-Corasick automaton there, a first-character index here). With
 * `encode_special_tokens` (which the SDK sets, as SentencePiece never parses control tokens in text), a
 * match of a special token such as `<eos>` is skipped and its characters stay ordinary text, while
 * non-special added tokens such as `<mask>` or `</code>` still become their ids.
 */
internal class AddedTokenSplitter(tokens: List<AddedToken>, private val encodeSpecialTokens: Boolean) {
    private val byFirstChar: Map<Char, List<AddedToken>> = tokens
        .filter { it.content.isNotEmpty() }
        .groupBy { it.content[0] }
        .mapValues { (_, sameStart) -> sameStart.sortedByDescending { it.content.length } }

    val isEmpty: Boolean get() = byFirstChar.isEmpty()

    /** Calls [text] for each stretch of ordinary text and [token] for each added token, in order. */
    fun split(input: String, text: (String) -> Unit, token: (Int) -> Unit) {
        var start = 0 // where the pending ordinary text begins
        var i = 0
        while (i < input.length) {
            val match = longestAt(input, i)
            if (match == null) {
                i++
                continue
            }
            i += match.content.length
            if (encodeSpecialTokens && match.special) continue
            if (i - match.content.length > start) text(input.substring(start, i - match.content.length))
            token(match.id)
            start = i
        }
        if (start < input.length) text(input.substring(start))
    }

    fun longestAt(input: String, index: Int): AddedToken? {
        val candidates = byFirstChar[input[index]] ?: return null
        for (candidate in candidates) if (input.startsWith(candidate.content, index)) return candidate
        return null
    }
}
