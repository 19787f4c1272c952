package siglip2.core

/**
 * The BPE model of a Hugging Face `tokenizer.json`, following the `tokenizers` crate step by step
 * (models/bpe/model.rs `merge_word`, word.rs `merge_all`) so that ids are identical:
 *
 * 1. every code point becomes its vocabulary id; one missing from the vocabulary becomes its UTF-8 bytes
 *    as `<0xXX>` tokens (byte fallback), else `<unk>` (runs of unknowns fused when `fuse_unk`);
 * 2. adjacent pairs merge lowest merge rank first, ties to the leftmost pair, until none applies.
 */
internal class BpeModel(
    private val vocab: Map<String, Int>,
    private val merges: MergeTable,
    private val unkId: Int?,
    private val byteFallback: Boolean,
    private val fuseUnk: Boolean,
    private val ignoreMerges: Boolean
) {
    private val byteIds = IntArray(256) { b -> vocab[byteToken(b)] ?: -1 }

    /** Append the ids of one pre-tokenized, normalized piece of text to [out]. */
    fun tokenize(word: String, out: IntList) {
        if (word.isEmpty()) return
        if (ignoreMerges) {
            val whole = vocab[word]
            if (whole != null) {
                out.add(whole)
                return
            }
        }
        val symbols = Symbols(word.length + 8)
        var unk = -1 // pending <unk> byte length, or -1
        var i = 0
        while (i < word.length) {
            val cp = word.codePointAt(i)
            val n = Character.charCount(cp)
            if (n == 1 && Character.isSurrogate(word[i])) {
                throw TokenizerException("text has an unpaired surrogate at index $i; it is not valid Unicode")
            }
            val piece = word.substring(i, i + n)
            val byteLength = utf8Length(cp)
            i += n
            val id = vocab[piece]
            if (id != null) {
                if (unk >= 0) {
                    symbols.add(unkId!!, unk)
                    unk = -1
                }
                symbols.add(id, byteLength)
                continue
            }
            if (byteFallback && addBytes(piece, symbols)) continue
            if (unkId != null) {
                unk = when {
                    unk >= 0 && fuseUnk -> unk + byteLength
                    unk >= 0 -> {
                        symbols.add(unkId, unk)
                        byteLength
                    }
                    else -> byteLength
                }
            }
        }
        if (unk >= 0) symbols.add(unkId!!, unk)
        symbols.mergeAll(merges)
        symbols.collect(out)
    }

    private fun addBytes(piece: String, symbols: Symbols): Boolean {
        val bytes = piece.toByteArray(Charsets.UTF_8)
        for (b in bytes) if (byteIds[b.toInt() and 0xff] < 0) return false
        for (b in bytes) symbols.add(byteIds[b.toInt() and 0xff], 1)
        return true
    }

    companion object {
        private const val HEX = "0123456789ABCDEF"

        /** The byte-fallback token name, `<0x0A>` (Rust's `{:#04X}`: upper-case digits, lower-case x). */
        fun byteToken(b: Int): String = "<0x" + HEX[b ushr 4] + HEX[b and 0xf] + ">"

        fun utf8Length(cp: Int): Int = when {
            cp < 0x80 -> 1
            cp < 0x800 -> 2
            cp < 0x10000 -> 3
            else -> 4
        }
    }
}

/** The symbols of one word as a doubly linked list over arrays (word.rs `Word`). */
private class Symbols(capacity: Int) {
    private var ids = IntArray(capacity)
    private var prev = IntArray(capacity)
    private var next = IntArray(capacity)
    private var length = IntArray(capacity) // bytes covered; 0 marks a symbol merged into its left neighbour
    private var size = 0

    fun add(id: Int, byteLength: Int) {
        if (size == ids.size) grow()
        ids[size] = id
        prev[size] = size - 1
        next[size] = -1
        length[size] = byteLength
        if (size > 0) next[size - 1] = size
        size++
    }

    private fun grow() {
        val capacity = ids.size * 2
        ids = ids.copyOf(capacity)
        prev = prev.copyOf(capacity)
        next = next.copyOf(capacity)
        length = length.copyOf(capacity)
    }

    fun mergeAll(merges: MergeTable) {
        val queue = MergeQueue(size)
        for (pos in 0 until size - 1) {
            val slot = merges.find(ids[pos], ids[pos + 1])
            if (slot >= 0) queue.push(merges.rankAt(slot), pos, merges.newIdAt(slot))
        }
        while (queue.isNotEmpty()) {
            val pos = queue.topPos()
            val newId = queue.topNewId()
            queue.pop()
            if (length[pos] == 0) continue
            val right = next[pos]
            if (right == -1) continue
            // An entry whose pair has changed since it was queued no longer applies.
            val current = merges.find(ids[pos], ids[right])
            if (current < 0 || merges.newIdAt(current) != newId) continue
            ids[pos] = newId
            length[pos] += length[right]
            next[pos] = next[right]
            length[right] = 0
            val after = next[right]
            if (after > -1 && after < size) prev[after] = pos
            val before = prev[pos]
            if (before >= 0) {
                val slot = merges.find(ids[before], ids[pos])
                if (slot >= 0) queue.push(merges.rankAt(slot), before, merges.newIdAt(slot))
            }
            val following = next[pos]
            if (following in 0 until size) {
                val slot = merges.find(ids[pos], ids[following])
                if (slot >= 0) queue.push(merges.rankAt(slot), pos, merges.newIdAt(slot))
            }
        }
    }

    fun collect(out: IntList) {
        for (i in 0 until size) if (length[i] != 0) out.add(ids[i])
    }
}

/**
 * Merge rules as an open-addressing hash table from the pair (left id, right id) to (rank, merged id);
 * a boxed HashMap of 580k Gemma merges would cost several times the memory on a phone.
 */
internal class MergeTable(expected: Int = 1024) {
    private var mask = 0
    private var keys = LongArray(0)
    private var ranks = IntArray(0)
    private var newIds = IntArray(0)
    var size = 0
        private set

    init {
        var capacity = 16
        while (capacity * 3 / 4 < expected) capacity = capacity shl 1
        allocate(capacity)
    }

    /** A later rule for the same pair replaces the earlier one, as collecting into a Rust HashMap does. */
    fun put(left: Int, right: Int, rank: Int, newId: Int) {
        if (size + 1 > keys.size * 3 / 4) rehash(keys.size * 2)
        val key = key(left, right)
        var slot = hash(key) and mask
        while (keys[slot] != EMPTY && keys[slot] != key) slot = (slot + 1) and mask
        if (keys[slot] == EMPTY) size++
        keys[slot] = key
        ranks[slot] = rank
        newIds[slot] = newId
    }

    /** The slot of the pair's rule, or -1. */
    fun find(left: Int, right: Int): Int {
        val key = key(left, right)
        var slot = hash(key) and mask
        while (true) {
            val k = keys[slot]
            if (k == key) return slot
            if (k == EMPTY) return -1
            slot = (slot + 1) and mask
        }
    }

    fun rankAt(slot: Int): Int = ranks[slot]

    fun newIdAt(slot: Int): Int = newIds[slot]

    private fun allocate(capacity: Int) {
        mask = capacity - 1
        keys = LongArray(capacity) { EMPTY }
        ranks = IntArray(capacity)
        newIds = IntArray(capacity)
    }

    private fun rehash(capacity: Int) {
        val oldKeys = keys
        val oldRanks = ranks
        val oldNewIds = newIds
        allocate(capacity)
        for (i in oldKeys.indices) {
            val key = oldKeys[i]
            if (key == EMPTY) continue
            var slot = hash(key) and mask
            while (keys[slot] != EMPTY) slot = (slot + 1) and mask
            keys[slot] = key
            ranks[slot] = oldRanks[i]
            newIds[slot] = oldNewIds[i]
        }
    }

    private fun key(left: Int, right: Int): Long = (left.toLong() shl 32) or (right.toLong() and 0xffffffffL)

    private fun hash(key: Long): Int {
        val h = key * -0x61c8864680b583ebL
        return (h xor (h ushr 29)).toInt()
    }

    private companion object {
        const val EMPTY = -1L // ids are never negative, so no real pair has this key
    }
}

/** A binary min-heap of (rank, position) with the merged id alongside: word.rs's BinaryHeap<Merge>. */
private class MergeQueue(capacity: Int) {
    private var keys = LongArray(maxOf(capacity, 4))
    private var values = IntArray(maxOf(capacity, 4))
    private var size = 0

    fun isNotEmpty(): Boolean = size > 0

    fun topPos(): Int = (keys[0] and 0xffffffffL).toInt()

    fun topNewId(): Int = values[0]

    fun push(rank: Int, pos: Int, newId: Int) {
        if (size == keys.size) {
            keys = keys.copyOf(size * 2)
            values = values.copyOf(size * 2)
        }
        // Lower rank first, then the leftmost position: the order of `Merge`'s Ord in the crate.
        val key = (rank.toLong() shl 32) or pos.toLong()
        var i = size++
        while (i > 0) {
            val parent = (i - 1) / 2
            if (keys[parent] <= key) break
            keys[i] = keys[parent]
            values[i] = values[parent]
            i = parent
        }
        keys[i] = key
        values[i] = newId
    }

    fun pop() {
        size--
        if (size == 0) return
        val key = keys[size]
        val value = values[size]
        var i = 0
        while (true) {
            var child = 2 * i + 1
            if (child >= size) break
            if (child + 1 < size && keys[child + 1] < keys[child]) child++
            if (keys[child] >= key) break
            keys[i] = keys[child]
            values[i] = values[child]
            i = child
        }
        keys[i] = key
        values[i] = value
    }
}

/** A growable list of ints without boxing. */
class IntList(capacity: Int = 16) {
    private var data = IntArray(maxOf(capacity, 4))
    var size = 0
        private set

    fun add(value: Int) {
        if (size == data.size) data = data.copyOf(size * 2)
        data[size++] = value
    }

    operator fun get(index: Int): Int {
        if (index >= size) throw IndexOutOfBoundsException("index $index, size $size")
        return data[index]
    }

    fun toIntArray(): IntArray = data.copyOf(size)
}
