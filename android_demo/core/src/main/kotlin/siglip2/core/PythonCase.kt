package siglip2.core

/**
 * Python's `str.lower()`, which the SDK applies before tokenizing (big_vision lowercases captions).
 *
 * Neither Kotlin's `lowercase()` nor Java's `toLowerCase(Locale)` is used: both depend on the platform's
 * Unicode tables and Java's on the locale (Turkish dotless i). Python applies the simple lowercase mapping
 * per code point, plus two rules from SpecialCasing.txt: U+0130 İ becomes "i̇" (i + U+0307), and Σ becomes
 * final ς when a cased letter precedes it and none follows (case-ignorable characters skipped both ways).
 */
object PythonCase {
    /**
     * Case pairs that Unicode 14 (Python 3.11) added after Unicode 13 (Java 17's tables): applied only
     * where the platform maps the code point to itself, so a newer Android changes nothing.
     */
    private val LOWER_SINCE_UNICODE_14: Map<Int, Int> = HashMap<Int, Int>().apply {
        put(0x2C2F, 0x2C5F) // Glagolitic capital caudate chrivi
        put(0xA7C0, 0xA7C1)
        put(0xA7D0, 0xA7D1)
        put(0xA7D6, 0xA7D7)
        put(0xA7D8, 0xA7D9)
        // Vithkuqi capitals U+10570..U+10595 (gaps at 1057B, 1058B, 10593) map 0x27 up.
        for (cp in 0x10570..0x10595) {
            if (cp != 0x1057B && cp != 0x1058B && cp != 0x10593) put(cp, cp + 0x27)
        }
    }

    /**
     * Code points Unicode 14 assigned that are Cased or Case_Ignorable in Python 3.11, as inclusive ranges:
     * consulted only where the platform's tables do not know the code point at all.
     */
    private val CASED_SINCE_UNICODE_14 = intArrayOf(
        0x2C2F, 0x2C2F, 0x2C5F, 0x2C5F, 0xA7C0, 0xA7C1, 0xA7D0, 0xA7D1, 0xA7D3, 0xA7D3, 0xA7D5, 0xA7D9,
        0x10570, 0x1057A, 0x1057C, 0x1058A, 0x1058C, 0x10592, 0x10594, 0x10595, 0x10597, 0x105A1,
        0x105A3, 0x105B1, 0x105B3, 0x105B9, 0x105BB, 0x105BC, 0x1DF00, 0x1DF09, 0x1DF0B, 0x1DF1E
    )
    private val CASE_IGNORABLE_SINCE_UNICODE_14 = intArrayOf(
        0x0888, 0x0888, 0x0890, 0x0891, 0x0898, 0x089F, 0x08C9, 0x08D2, 0x0C3C, 0x0C3C, 0x180F, 0x180F,
        0x1AC1, 0x1ACE, 0x1DFA, 0x1DFA, 0xA7F2, 0xA7F4, 0xFBC2, 0xFBC2, 0x10780, 0x10785, 0x10787, 0x107B0,
        0x107B2, 0x107BA, 0x10F82, 0x10F85, 0x11070, 0x11070, 0x11073, 0x11074, 0x110C2, 0x110C2,
        0x1AFF0, 0x1AFF3, 0x1AFF5, 0x1AFFB, 0x1AFFD, 0x1AFFE, 0x1CF00, 0x1CF2D, 0x1CF30, 0x1CF46,
        0x1E2AE, 0x1E2AE
    )

    /** Unicode 14 recategorized HANUNOO SIGN PAMUDPOD from Mn to Mc: no longer case-ignorable. */
    private const val PAMUDPOD = 0x1734

    /** Word_Break MidLetter, MidNumLet and Single_Quote: case-ignorable whatever their category. */
    private val IGNORABLE_PUNCTUATION = setOf(
        0x0027, 0x002E, 0x003A, 0x00B7, 0x0387, 0x055F, 0x05F4, 0x2018, 0x2019, 0x2024, 0x2027,
        0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A
    )

    @JvmStatic
    fun lower(text: String): String {
        val out = StringBuilder(text.length)
        var i = 0
        while (i < text.length) {
            val cp = text.codePointAt(i)
            when (cp) {
                0x0130 -> out.append("i\u0307")
                0x03A3 -> out.append(if (isFinalSigma(text, i)) '\u03C2' else '\u03C3')
                else -> out.appendCodePoint(lowerCodePoint(cp))
            }
            i += Character.charCount(cp)
        }
        return out.toString()
    }

    /** The simple lowercase mapping of one code point. */
    @JvmStatic
    fun lowerCodePoint(cp: Int): Int {
        val lower = Character.toLowerCase(cp)
        return if (lower != cp) lower else LOWER_SINCE_UNICODE_14[cp] ?: cp
    }

    /** Unicode's Cased property: Lowercase, Uppercase or titlecase letter. */
    @JvmStatic
    fun isCased(cp: Int): Boolean {
        if (isUnknown(cp)) return inRanges(CASED_SINCE_UNICODE_14, cp)
        return Character.isLowerCase(cp) || Character.isUpperCase(cp) ||
            Character.getType(cp) == Character.TITLECASE_LETTER.toInt()
    }

    /** Unicode's Case_Ignorable property: marks, format characters, modifiers and word-internal punctuation. */
    @JvmStatic
    fun isCaseIgnorable(cp: Int): Boolean {
        if (isUnknown(cp)) return inRanges(CASE_IGNORABLE_SINCE_UNICODE_14, cp)
        if (cp == PAMUDPOD) return false
        when (Character.getType(cp)) {
            Character.NON_SPACING_MARK.toInt(), Character.ENCLOSING_MARK.toInt(), Character.FORMAT.toInt(),
            Character.MODIFIER_LETTER.toInt(), Character.MODIFIER_SYMBOL.toInt() -> return true
        }
        return cp in IGNORABLE_PUNCTUATION
    }

    private fun isUnknown(cp: Int): Boolean = Character.getType(cp) == Character.UNASSIGNED.toInt()

    private fun inRanges(ranges: IntArray, cp: Int): Boolean {
        var i = 0
        while (i < ranges.size) {
            if (cp >= ranges[i] && cp <= ranges[i + 1]) return true
            i += 2
        }
        return false
    }

    /** Python's `handle_capital_sigma`: the Final_Sigma context of the Σ at `index`. */
    private fun isFinalSigma(text: String, index: Int): Boolean {
        var j = index
        var before = -1
        while (j > 0) {
            val cp = text.codePointBefore(j)
            j -= Character.charCount(cp)
            if (!isCaseIgnorable(cp)) {
                before = cp
                break
            }
        }
        if (before < 0 || !isCased(before)) return false
        j = index + 1
        while (j < text.length) {
            val cp = text.codePointAt(j)
            j += Character.charCount(cp)
            if (!isCaseIgnorable(cp)) return !isCased(cp)
        }
        return true
    }
}
