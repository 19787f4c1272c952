package siglip2.demo.model

import siglip2.core.BatchPlan
import siglip2.core.GemmaTokenizer
import siglip2.core.ImagePreprocessor
import siglip2.core.Manifest
import siglip2.core.OrientedImage
import java.io.Closeable
import java.io.File

/**
 * A verified bundle ready to embed, the phone's counterpart of the SDK's `Encoder`: the manifest's
 * preprocessing and tokenizer in front of the bundle's towers on its runtime.
 *
 * Each tower loads on first use: the indexing worker only ever needs the image tower and the search
 * screen only the text tower, so neither pays for the other's memory (the Gemma token table alone is
 * most of a text tower). Calls are serialized: interpreters are not thread-safe.
 */
class SiglipModel(val name: String, val dir: File, val manifest: Manifest, private val threads: Int) : Closeable {
    val runtimeLabel: String = Towers.label(manifest.runtime)
    private val preprocessor = ImagePreprocessor(manifest.image)
    private val imagePlan = BatchPlan.forImages(manifest)
    private val textPlan = BatchPlan.forTexts(manifest)
    private var imageTower: Tower? = null
    private var textTower: Tower? = null
    private var tokenizer: GemmaTokenizer? = null

    /** Images per model call for indexing: the fixed batch, else a few (bounded by max_batch). */
    val imageBatch: Int get() = imagePlan.fixed ?: minOf(DYNAMIC_IMAGE_BATCH, imagePlan.max ?: DYNAMIC_IMAGE_BATCH)

    /** Floats per preprocessed image. */
    val pixelsPerImage: Int get() = preprocessor.size

    /** Preprocess one decoded photo into slot [slot] of a batch buffer (overwrites the photo's ARGB buffer). */
    @Synchronized
    fun preprocessInto(image: OrientedImage, batchBuffer: FloatArray, slot: Int) {
        preprocessor.preprocessInto(
            image.argb, image.width, image.height, batchBuffer, slot * preprocessor.size,
            channelsLast = image().channelsLast, reuseInput = true
        )
    }

    /** Embeddings of the first [items] images in [batchBuffer] (at most [imageBatch]); pads a fixed batch. */
    @Synchronized
    fun embedImages(batchBuffer: FloatArray, items: Int): Array<FloatArray> {
        val tower = image()
        val chunk = imagePlan.chunks(items, preferred = items).single()
        BatchPlan.padWithLastRow(batchBuffer, preprocessor.size, chunk.items, chunk.batch)
        val values = chunk.batch * preprocessor.size
        val input = if (batchBuffer.size == values) batchBuffer else batchBuffer.copyOf(values)
        return tower.embedPixels(input, chunk.batch).copyOf(items).requireNoNulls()
    }

    /** The query's embedding: big_vision token row, padded to the text tower's fixed batch if it has one. */
    @Synchronized
    fun embedText(text: String): FloatArray {
        val row = tokenizer().row(text)
        val batch = textPlan.chunks(1, preferred = 1).single().batch
        return text().embedTokens(BatchPlan.padWithLastRow(listOf(row), batch))[0]
    }

    /** Load the text tower and tokenizer ahead of the first query (both take seconds on a phone). */
    @Synchronized
    fun warmUpText() {
        tokenizer()
        text()
    }

    private fun image(): Tower = imageTower ?: Towers.open(manifest, file("image_model"), threads).also { imageTower = it }

    private fun text(): Tower = textTower ?: Towers.open(manifest, file("text_model"), threads).also { textTower = it }

    private fun tokenizer(): GemmaTokenizer =
        tokenizer ?: GemmaTokenizer.load(file("tokenizer"), manifest.text).also { tokenizer = it }

    private fun file(role: String): File = File(dir, manifest.files.getValue(role).path)

    @Synchronized
    override fun close() {
        imageTower?.close()
        textTower?.close()
        imageTower = null
        textTower = null
    }

    companion object {
        private const val DYNAMIC_IMAGE_BATCH = 8

        /** Threads for the runtimes: the big cores of a typical phone, leaving the UI one. */
        fun defaultThreads(): Int = Runtime.getRuntime().availableProcessors().coerceIn(1, 4)
    }
}
