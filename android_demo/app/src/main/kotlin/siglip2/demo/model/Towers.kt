package siglip2.demo.model

import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import siglip2.core.BundleException
import siglip2.core.Manifest
import java.io.Closeable
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.roundToLong

/**
 * One tower of a bundle on its runtime: a batch of inputs in, one L2-normalized embedding per row out.
 * Inputs are already laid out for the model (pixels CHW or HWC, token rows); batching is the caller's.
 */
interface Tower : Closeable {
    /** The batch the model file takes, or null where the batch axis is dynamic. */
    val fixedBatch: Int?

    /** Pixels of `batch` images, each `3 × H × W` floats, in the tower's layout. */
    fun embedPixels(pixels: FloatArray, batch: Int): Array<FloatArray>

    /** Token rows of equal length. */
    fun embedTokens(rows: List<IntArray>): Array<FloatArray>

    /** Whether the image input is NHWC (some TFLite conversions) rather than the exported NCHW. */
    val channelsLast: Boolean
}

/** Opens the tower file of a bundle on the runtime the manifest names. */
object Towers {
    fun open(manifest: Manifest, file: File, threads: Int): Tower = when (manifest.runtime) {
        "litert" -> LiteRtTower(file, threads, manifest.embedDim)
        "executorch" -> ExecuTorchTower(file, manifest)
        else -> throw BundleException("this app runs LiteRT and ExecuTorch bundles, not ${manifest.runtime}")
    }

    fun label(runtime: String): String = when (runtime) {
        "litert" -> "LiteRT"
        "executorch" -> "ExecuTorch"
        else -> runtime
    }
}

/**
 * A `.tflite` tower on the LiteRT interpreter. The file takes one fixed batch (the converter cannot
 * lower a dynamic axis). Inputs are written in the tensor's own type: float32, int8/uint8 with the
 * file's scale and zero point (static int8 image towers), int32 or int64 token ids (the converter
 * narrows int64 to int32); quantized outputs are dequantized — the same rules as the SDK's LiteRT backend.
 */
private class LiteRtTower(file: File, threads: Int, private val embedDim: Int) : Tower {
    private val interpreter = try {
        Interpreter(file, Interpreter.Options().setNumThreads(threads))
    } catch (e: IllegalArgumentException) {
        throw BundleException("LiteRT cannot load '${file.name}': ${e.message}")
    }
    private val input = interpreter.getInputTensor(0)
    private val output = interpreter.getOutputTensor(0)
    private val inputShape = input.shape()

    override val fixedBatch: Int = inputShape[0]
    override val channelsLast: Boolean = inputShape.size == 4 && inputShape[3] == 3 && inputShape[1] != 3

    init {
        val width = output.shape().last()
        if (width != embedDim) {
            throw BundleException("'${file.name}' gives $width-d embeddings but the manifest says $embedDim-d: re-export the bundle")
        }
    }

    override fun embedPixels(pixels: FloatArray, batch: Int): Array<FloatArray> {
        checkBatch(batch)
        val buffer = allocate(input.numBytes())
        val params = input.quantizationParams()
        when (input.dataType()) {
            DataType.FLOAT32 -> for (v in pixels) buffer.putFloat(v)
            DataType.INT8 -> for (v in pixels) buffer.put(quantize(v, params.scale, params.zeroPoint, -128, 127).toByte())
            DataType.UINT8 -> for (v in pixels) buffer.put(quantize(v, params.scale, params.zeroPoint, 0, 255).toByte())
            else -> throw BundleException("LiteRT image tower takes ${input.dataType()}, which this app cannot feed")
        }
        return runModel(buffer, batch)
    }

    override fun embedTokens(rows: List<IntArray>): Array<FloatArray> {
        checkBatch(rows.size)
        val buffer = allocate(input.numBytes())
        when (input.dataType()) {
            DataType.INT32 -> for (row in rows) for (id in row) buffer.putInt(id)
            DataType.INT64 -> for (row in rows) for (id in row) buffer.putLong(id.toLong())
            else -> throw BundleException("LiteRT text tower takes ${input.dataType()}, not token ids")
        }
        return runModel(buffer, rows.size)
    }

    private fun runModel(buffer: ByteBuffer, batch: Int): Array<FloatArray> {
        buffer.rewind()
        val out = allocate(output.numBytes())
        interpreter.run(buffer, out)
        out.rewind()
        val params = output.quantizationParams()
        val type = output.dataType()
        return Array(batch) { row ->
            FloatArray(embedDim) { d ->
                val i = row * embedDim + d
                when (type) {
                    DataType.FLOAT32 -> out.getFloat(i * 4)
                    DataType.INT8 -> (out.get(i) - params.zeroPoint) * params.scale
                    DataType.UINT8 -> ((out.get(i).toInt() and 0xff) - params.zeroPoint) * params.scale
                    else -> throw BundleException("LiteRT tower outputs $type, not embeddings")
                }
            }
        }
    }

    private fun checkBatch(batch: Int) {
        if (batch != fixedBatch) throw IllegalArgumentException("this .tflite tower takes batches of $fixedBatch, got $batch")
    }

    /** numpy's `round(v / scale) + zero_point` (half to even), clipped to the type. */
    private fun quantize(v: Float, scale: Float, zeroPoint: Int, min: Int, max: Int): Int {
        val q = Math.rint((v / scale).toDouble()).roundToLong() + zeroPoint
        return q.coerceIn(min.toLong(), max.toLong()).toInt()
    }

    private fun allocate(bytes: Int): ByteBuffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())

    override fun close() = interpreter.close()
}

/** A `.pte` tower (XNNPACK-delegated) on ExecuTorch's Android runtime; batches as the manifest plans them (fixed batch_size, or up to max_batch in older bundles). */
private class ExecuTorchTower(file: File, manifest: Manifest) : Tower {
    private val embedDim = manifest.embedDim
    private val height = manifest.image.height.toLong()
    private val width = manifest.image.width.toLong()

    private val module = try {
        Module.load(file.path)
    } catch (e: RuntimeException) {
        throw BundleException("ExecuTorch cannot load '${file.name}': ${e.message}")
    }

    override val fixedBatch: Int? = null
    override val channelsLast: Boolean = false

    override fun embedPixels(pixels: FloatArray, batch: Int): Array<FloatArray> {
        val shape = longArrayOf(batch.toLong(), 3, height, width)
        return rows(module.forward(EValue.from(Tensor.fromBlob(pixels, shape)))[0].toTensor(), batch)
    }

    override fun embedTokens(rows: List<IntArray>): Array<FloatArray> {
        val length = rows.first().size
        val ids = LongArray(rows.size * length)
        for ((r, row) in rows.withIndex()) for (i in row.indices) ids[r * length + i] = row[i].toLong()
        val tensor = Tensor.fromBlob(ids, longArrayOf(rows.size.toLong(), length.toLong()))
        return rows(module.forward(EValue.from(tensor))[0].toTensor(), rows.size)
    }

    private fun rows(output: Tensor, batch: Int): Array<FloatArray> {
        val data = output.dataAsFloatArray
        if (data.size != batch * embedDim) {
            throw BundleException("ExecuTorch tower returned ${data.size} values for $batch × $embedDim: re-export the bundle")
        }
        return Array(batch) { data.copyOfRange(it * embedDim, (it + 1) * embedDim) }
    }

    override fun close() = module.destroy()
}
