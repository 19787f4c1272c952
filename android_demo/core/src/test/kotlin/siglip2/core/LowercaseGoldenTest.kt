package siglip2.core

import org.junit.Assert.assertEquals
import org.junit.Test

/** PythonCase.lower matches Python's str.lower() on every code point and in every Final_Sigma context. */
class LowercaseGoldenTest {
    private val golden = Goldens.json("lowercase.json").asJsonObject

    private fun inRanges(key: String): BooleanArray {
        val marks = BooleanArray(0x110000)
        for (range in golden.getAsJsonArray(key)) {
            val pair = range.asJsonArray
            for (cp in pair.get(0).asInt..pair.get(1).asInt) marks[cp] = true
        }
        return marks
    }

    private fun codePoints(): IntRange = 0..0x10FFFF

    private fun string(cp: Int): String = String(Character.toChars(cp))

    @Test
    fun everyCodePointLowercasesAsInPython() {
        val expected = HashMap<Int, String>()
        for (entry in golden.getAsJsonArray("changed")) {
            val pair = entry.asJsonArray
            expected[pair.get(0).asInt] = pair.get(1).asString
        }
        val wrong = ArrayList<String>()
        for (cp in codePoints()) {
            if (cp in 0xD800..0xDFFF) continue
            val text = string(cp)
            val lower = PythonCase.lower(text)
            val want = expected[cp] ?: text
            if (lower != want) wrong.add(String.format("U+%04X -> %s (Python %s)", cp, hex(lower), hex(want)))
        }
        val python = golden.get("python").asString
        val unicode = golden.get("unicode").asString
        assertEquals("${wrong.size} code points differ from Python $python (Unicode $unicode): ${wrong.take(12)}", 0, wrong.size)
    }

    @Test
    fun finalSigmaContextsMatchPython() {
        val cased = inRanges("cased")
        val ignorable = inRanges("case_ignorable")
        val wrong = ArrayList<String>()
        for (cp in codePoints()) {
            if (cp in 0xD800..0xDFFF) continue
            val c = string(cp)
            val afterC = PythonCase.lower(c + "Σ").endsWith("ς")
            val afterAc = PythonCase.lower("A" + c + "Σ").endsWith("ς")
            if (afterC != cased[cp]) wrong.add(String.format("U+%04X cased=%s", cp, cased[cp]))
            if (afterAc != (cased[cp] || ignorable[cp])) wrong.add(String.format("U+%04X ignorable=%s", cp, ignorable[cp]))
        }
        assertEquals("${wrong.size} Final_Sigma decisions differ: ${wrong.take(12)}", 0, wrong.size)
    }

    @Test
    fun turkishDottedCapitalIKeepsItsDot() {
        assertEquals("i\u0307stanbul", PythonCase.lower("İSTANBUL"))
    }

    @Test
    fun sigmaIsFinalOnlyAtTheEndOfAWord() {
        assertEquals("οδος σας σας. σ ας' σ1", PythonCase.lower("ΟΔΟΣ ΣΑΣ ΣΑΣ. Σ ΑΣ' Σ1"))
    }

    private fun hex(text: String): String {
        val out = StringBuilder()
        var i = 0
        while (i < text.length) {
            val cp = text.codePointAt(i)
            out.append(String.format("U+%04X ", cp))
            i += Character.charCount(cp)
        }
        return out.toString().trim()
    }
}
