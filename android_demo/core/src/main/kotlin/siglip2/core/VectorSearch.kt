package siglip2.core

/** One search result: the row of the vector in the index and its score (dot product). */
class Hit(val row: Int, val score: Float) {
    override fun toString(): String = "Hit(row=$row, score=$score)"
}

/**
 * Exact search over L2-normalized float32 vectors, stored row after row in one array: the dot product with
 * the query, summed left to right in float32, and the k best by score. Equal scores keep row order (the
 * order of the SDK's stable argsort), so the ranking is deterministic and identical to the SDK's.
 */
class VectorIndex(val dim: Int, initialCapacity: Int = 1024) {
    init {
        if (dim <= 0) throw IllegalArgumentException("dim must be positive, got $dim")
    }

    private var data = FloatArray(dim * maxOf(initialCapacity, 1))

    var size = 0
        private set

    /** Append one vector; returns its row. */
    fun add(vector: FloatArray): Int {
        if (vector.size != dim) throw InputException("vector has ${vector.size} values; the index holds $dim")
        if ((size + 1) * dim > data.size) data = data.copyOf(maxOf(data.size * 2, (size + 1) * dim))
        System.arraycopy(vector, 0, data, size * dim, dim)
        return size++
    }

    fun vector(row: Int): FloatArray = data.copyOfRange(row * dim, (row + 1) * dim)

    fun score(row: Int, query: FloatArray): Float {
        var sum = 0f
        val base = row * dim
        for (d in 0 until dim) sum += data[base + d] * query[d]
        return sum
    }

    /** The [k] rows closest to [query], best first. */
    fun search(query: FloatArray, k: Int): List<Hit> {
        if (query.size != dim) throw InputException("query has ${query.size} values; the index holds $dim")
        if (k < 1) throw InputException("k must be at least 1, got $k")
        val keep = minOf(k, size)
        // A min-heap of the best `keep` so far; its root is the worst of them.
        val rows = IntArray(keep)
        val scores = FloatArray(keep)
        var held = 0
        for (row in 0 until size) {
            val s = score(row, query)
            if (held < keep) {
                rows[held] = row
                scores[held] = s
                held++
                siftUp(rows, scores, held - 1)
            } else if (better(s, row, scores[0], rows[0])) {
                rows[0] = row
                scores[0] = s
                siftDown(rows, scores, held)
            }
        }
        val order = (0 until held).sortedWith(Comparator { a, b ->
            when {
                better(scores[a], rows[a], scores[b], rows[b]) -> -1
                better(scores[b], rows[b], scores[a], rows[a]) -> 1
                else -> 0
            }
        })
        return order.map { Hit(rows[it], scores[it]) }
    }

    companion object {
        /** Higher score first; equal scores (including 0.0 and -0.0) keep the lower row first. */
        private fun better(score: Float, row: Int, otherScore: Float, otherRow: Int): Boolean =
            score > otherScore || (score == otherScore && row < otherRow)

        private fun siftUp(rows: IntArray, scores: FloatArray, start: Int) {
            var i = start
            while (i > 0) {
                val parent = (i - 1) / 2
                if (!better(scores[parent], rows[parent], scores[i], rows[i])) break
                swap(rows, scores, i, parent)
                i = parent
            }
        }

        private fun siftDown(rows: IntArray, scores: FloatArray, size: Int) {
            var i = 0
            while (true) {
                var worst = i
                val left = 2 * i + 1
                val right = left + 1
                if (left < size && better(scores[worst], rows[worst], scores[left], rows[left])) worst = left
                if (right < size && better(scores[worst], rows[worst], scores[right], rows[right])) worst = right
                if (worst == i) return
                swap(rows, scores, i, worst)
                i = worst
            }
        }

        private fun swap(rows: IntArray, scores: FloatArray, a: Int, b: Int) {
            val r = rows[a]
            rows[a] = rows[b]
            rows[b] = r
            val s = scores[a]
            scores[a] = scores[b]
            scores[b] = s
        }

        /** The vector scaled to unit length (a zero vector stays zero). */
        @JvmStatic
        fun normalized(vector: FloatArray): FloatArray {
            var sum = 0.0
            for (v in vector) sum += v.toDouble() * v
            if (sum == 0.0) return vector.copyOf()
            val scale = (1.0 / Math.sqrt(sum)).toFloat()
            return FloatArray(vector.size) { vector[it] * scale }
        }

        /** SigLIP's pair probability from a dot product: sigmoid(t · s + b) with the manifest's t and b. */
        @JvmStatic
        fun probability(score: Float, logitScale: Double, logitBias: Double): Double =
            1.0 / (1.0 + Math.exp(-(logitScale * score + logitBias)))
    }
}

/**
 * How a tower is fed: a fixed batch (TFLite bundles record one per tower; the last batch is padded and
 * the padding's outputs dropped), or chunks of at most `max_batch` for a dynamic batch axis.
 */
class BatchPlan(val fixed: Int?, val max: Int?) {
    init {
        if (fixed != null && fixed < 1) throw IllegalArgumentException("batch size must be positive, got $fixed")
        if (max != null && max < 1) throw IllegalArgumentException("max batch must be positive, got $max")
    }

    /** The model batch for each chunk of [count] inputs: (start, real items, batch the model runs). */
    fun chunks(count: Int, preferred: Int): List<Chunk> {
        val step = fixed ?: minOf(maxOf(preferred, 1), max ?: Int.MAX_VALUE)
        val chunks = ArrayList<Chunk>()
        var start = 0
        while (start < count) {
            val items = minOf(step, count - start)
            chunks.add(Chunk(start, items, fixed ?: items))
            start += items
        }
        return chunks
    }

    class Chunk(val start: Int, val items: Int, val batch: Int) {
        override fun toString(): String = "Chunk(start=$start, items=$items, batch=$batch)"
    }

    companion object {
        /**
         * Fill rows [items, batch) of a fixed batch with copies of the last real row, as the SDK does:
         * dynamically quantized kernels pick activation ranges at run time, and a copy adds no new range.
         */
        @JvmStatic
        fun padWithLastRow(buffer: FloatArray, rowSize: Int, items: Int, batch: Int) {
            if (items < 1) throw InputException("a batch needs at least one real row")
            for (row in items until batch) System.arraycopy(buffer, (items - 1) * rowSize, buffer, row * rowSize, rowSize)
        }

        @JvmStatic
        fun padWithLastRow(rows: List<IntArray>, batch: Int): List<IntArray> {
            if (rows.isEmpty()) throw InputException("a batch needs at least one real row")
            return List(batch) { rows[minOf(it, rows.size - 1)] }
        }

        @JvmStatic
        fun forImages(manifest: Manifest): BatchPlan = BatchPlan(manifest.batchSize.image, manifest.maxBatch.image)

        @JvmStatic
        fun forTexts(manifest: Manifest): BatchPlan = BatchPlan(manifest.batchSize.text, manifest.maxBatch.text)
    }
}
