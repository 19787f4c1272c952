package siglip2.demo.ui

import android.app.Application
import android.net.Uri
import android.os.SystemClock
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import androidx.work.WorkInfo
import androidx.work.WorkManager
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import siglip2.core.Siglip2Exception
import siglip2.core.VectorIndex
import siglip2.demo.index.IndexStats
import siglip2.demo.index.IndexWorker
import siglip2.demo.index.PhotoDb
import siglip2.demo.index.SearchCorpus
import siglip2.demo.model.BundleStore
import siglip2.demo.model.InstalledBundle
import siglip2.demo.model.SiglipModel

/** One search result: the photo, its dot-product score and SigLIP's pair probability. */
class ResultItem(val uri: Uri, val name: String, val score: Float, val probability: Double)

/** Indexing as WorkManager reports it. */
class IndexProgress(val running: Boolean, val done: Int, val total: Int, val error: String?)

data class UiState(
    val bundles: List<InstalledBundle> = emptyList(),
    val model: SiglipModel? = null,
    val loading: Boolean = true,
    val problem: String? = null,
    val query: String = "",
    val results: List<ResultItem> = emptyList(),
    val searching: Boolean = false,
    val queryMs: Double? = null,
    val stats: IndexStats? = null,
    val progress: IndexProgress = IndexProgress(false, 0, 0, null)
)

class SearchViewModel(application: Application) : AndroidViewModel(application) {
    private val store = BundleStore(application)
    private val db = PhotoDb(application)
    private val state = MutableStateFlow(UiState())
    val ui: StateFlow<UiState> = state
    private var corpus: SearchCorpus? = null
    private var searchJob: Job? = null

    init {
        loadBundle(null)
        viewModelScope.launch {
            WorkManager.getInstance(application).getWorkInfosForUniqueWorkFlow(IndexWorker.WORK_NAME).collect { infos ->
                onWorkInfo(infos.firstOrNull())
            }
        }
    }

    /** Find bundles, verify the chosen one (sha256 of every file) and load its text side in the background. */
    fun loadBundle(name: String?) {
        if (name != null) store.selectedName = name
        state.update { it.copy(loading = true, problem = null, results = emptyList()) }
        viewModelScope.launch {
            val loaded = withContext(Dispatchers.IO) {
                val bundles = store.list()
                val chosen = store.choose(bundles)
                try {
                    val model = chosen?.let { SiglipModel(it.name, it.dir, store.verify(it), SiglipModel.defaultThreads()) }
                    model?.warmUpText()
                    Triple(bundles, model, if (chosen == null) noBundleMessage(bundles) else null)
                } catch (e: Siglip2Exception) {
                    Triple(bundles, null, e.message)
                }
            }
            state.value.model?.close()
            corpus = null
            val (bundles, model, problem) = loaded
            state.update { it.copy(bundles = bundles, model = model, loading = false, problem = problem) }
            refreshStats()
        }
    }

    fun onQueryChange(query: String) = state.update { it.copy(query = query) }

    fun search() {
        val model = state.value.model ?: return
        val query = state.value.query.trim()
        if (query.isEmpty()) return
        searchJob?.cancel()
        state.update { it.copy(searching = true) }
        searchJob = viewModelScope.launch {
            val (results, ms) = withContext(Dispatchers.Default) {
                val start = SystemClock.elapsedRealtimeNanos()
                val vector = model.embedText(query)
                val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
                val corpus = corpusFor(model)
                val hits = if (corpus.index.size == 0) emptyList() else corpus.index.search(vector, RESULTS)
                val manifest = model.manifest
                hits.map {
                    ResultItem(
                        corpus.uris[it.row], corpus.names[it.row], it.score,
                        VectorIndex.probability(it.score, manifest.logitScale, manifest.logitBias)
                    )
                } to ms
            }
            state.update { it.copy(results = results, queryMs = ms, searching = false) }
        }
    }

    fun startIndexing() {
        val model = state.value.model ?: return
        IndexWorker.start(getApplication(), model.name)
    }

    private fun corpusFor(model: SiglipModel): SearchCorpus {
        val cached = corpus
        if (cached != null && cached.modelId == model.manifest.modelId) return cached
        return db.corpus(model.manifest.modelId, model.manifest.embedDim).also { corpus = it }
    }

    private fun onWorkInfo(info: WorkInfo?) {
        val progress = when {
            info == null -> IndexProgress(false, 0, 0, null)
            info.state == WorkInfo.State.RUNNING || info.state == WorkInfo.State.ENQUEUED -> IndexProgress(
                true, info.progress.getInt(IndexWorker.KEY_DONE, 0), info.progress.getInt(IndexWorker.KEY_TOTAL, 0), null
            )
            info.state == WorkInfo.State.FAILED -> IndexProgress(false, 0, 0, info.outputData.getString(IndexWorker.KEY_ERROR))
            else -> IndexProgress(false, 0, 0, null)
        }
        state.update { it.copy(progress = progress) }
        // New vectors are in the database: the next search reads them.
        corpus = null
        refreshStats()
    }

    private fun refreshStats() {
        val model = state.value.model ?: return
        viewModelScope.launch {
            val stats = withContext(Dispatchers.IO) { db.stats(model.manifest.modelId) }
            state.update { it.copy(stats = stats) }
        }
    }

    private fun noBundleMessage(bundles: List<InstalledBundle>): String {
        val reasons = bundles.filter { !it.usable }.joinToString("\n") { "${it.name}: ${it.problem}" }
        val where = store.pushedDir.path
        return "No usable bundle. Push one with: adb push BUNDLE $where/NAME" + if (reasons.isEmpty()) "" else "\n$reasons"
    }

    override fun onCleared() {
        state.value.model?.close()
        db.close()
    }

    private companion object {
        const val RESULTS = 60
    }
}
