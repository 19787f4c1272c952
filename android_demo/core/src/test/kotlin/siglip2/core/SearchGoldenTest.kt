package siglip2.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** Top-k rows and scores identical to the SDK's ranking, exact ties included. */
class SearchGoldenTest {
    @Test
    fun topKMatchesTheSdkForEveryQuery() {
        val golden = Goldens.json("search.json").asJsonObject
        val dim = golden.get("dim").asInt
        val k = golden.get("k").asInt
        val vectors = Goldens.floats(golden.get("vectors").asString)
        val queries = Goldens.floats(golden.get("queries").asString)
        val index = VectorIndex(dim)
        for (row in 0 until golden.get("count").asInt) index.add(vectors.copyOfRange(row * dim, (row + 1) * dim))
        val expected = golden.getAsJsonArray("expected")
        var ties = 0
        for (q in 0 until expected.size()) {
            val query = queries.copyOfRange(q * dim, (q + 1) * dim)
            val hits = index.search(query, k)
            val want = expected.get(q).asJsonObject
            val rows = want.getAsJsonArray("top").map { it.asInt }
            val scores = want.getAsJsonArray("scores").map { it.asFloat }
            assertEquals("query $q rows", rows, hits.map { it.row })
            assertEquals("query $q scores", scores, hits.map { it.score })
            ties += scores.zipWithNext().count { (a, b) -> a == b }
        }
        assertTrue("the goldens should hold exact ties, found $ties", ties > 0)
        println("search: ${expected.size()} queries, identical top-$k ($ties exact ties)")
    }
}
