package siglip2.demo.ui

import android.Manifest
import android.content.ActivityNotFoundException
import android.content.Context
import android.content.Intent
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import android.os.Build
import android.util.Size
import android.widget.Toast
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.Image
import androidx.compose.foundation.background
import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.aspectRatio
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.safeDrawingPadding
import androidx.compose.foundation.lazy.grid.GridCells
import androidx.compose.foundation.lazy.grid.LazyVerticalGrid
import androidx.compose.foundation.lazy.grid.items
import androidx.compose.foundation.text.KeyboardActions
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.filled.Search
import androidx.compose.material3.Button
import androidx.compose.material3.DropdownMenu
import androidx.compose.material3.DropdownMenuItem
import androidx.compose.material3.Icon
import androidx.compose.material3.IconButton
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.produceState
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.ImageBitmap
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.layout.ContentScale
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.text.input.ImeAction
import androidx.compose.ui.unit.dp
import androidx.core.content.ContextCompat
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext
import java.io.IOException
import java.util.Locale

/** Search box, model/runtime/latency line, indexing controls and the results grid. */
@Composable
fun SearchScreen(viewModel: SearchViewModel) {
    val ui by viewModel.ui.collectAsStateWithLifecycle()
    val context = LocalContext.current
    var granted by remember { mutableStateOf(hasPhotoPermission(context)) }
    val askPermissions = rememberLauncherForActivityResult(ActivityResultContracts.RequestMultiplePermissions()) {
        granted = hasPhotoPermission(context)
        if (granted) viewModel.startIndexing()
    }
    LaunchedEffect(granted, ui.model) {
        // Each start picks up photos added since the last run (only new or changed ones are embedded).
        if (granted && ui.model != null) viewModel.startIndexing()
    }

    Column(Modifier.fillMaxSize().safeDrawingPadding().padding(12.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        ModelLine(ui, onPick = viewModel::loadBundle)
        ui.problem?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        IndexLine(ui, granted, onIndex = {
            if (granted) viewModel.startIndexing() else askPermissions.launch(permissionsToAsk())
        })
        OutlinedTextField(
            value = ui.query,
            onValueChange = viewModel::onQueryChange,
            modifier = Modifier.fillMaxWidth(),
            singleLine = true,
            enabled = ui.model != null,
            placeholder = { Text("a red bicycle, un chat noir, 海辺の夕日 …") },
            keyboardOptions = KeyboardOptions(imeAction = ImeAction.Search),
            keyboardActions = KeyboardActions(onSearch = { viewModel.search() }),
            trailingIcon = {
                IconButton(onClick = viewModel::search, enabled = ui.model != null) {
                    Icon(Icons.Filled.Search, contentDescription = "Search")
                }
            }
        )
        if (ui.searching || ui.loading) LinearProgressIndicator(Modifier.fillMaxWidth())
        ui.queryMs?.let { Text("${ui.results.size} results · query embedded in ${formatMs(it)}", style = MaterialTheme.typography.bodySmall) }
        ResultsGrid(ui.results, onOpen = { openPhoto(context, it) })
    }
}

@Composable
private fun ModelLine(ui: UiState, onPick: (String) -> Unit) {
    var open by remember { mutableStateOf(false) }
    val model = ui.model
    Row(verticalAlignment = Alignment.CenterVertically) {
        Column(Modifier.weight(1f)) {
            Text(model?.manifest?.modelId ?: "no model", style = MaterialTheme.typography.titleMedium)
            if (model != null) {
                val m = model.manifest
                Text(
                    "${model.runtimeLabel} · ${m.precision} · ${m.embedDim}-d · ${m.image.width}×${m.image.height} px · bundle ${model.name}",
                    style = MaterialTheme.typography.bodySmall
                )
            }
        }
        Box {
            OutlinedButton(onClick = { open = true }, enabled = ui.bundles.isNotEmpty()) { Text("Bundle") }
            DropdownMenu(expanded = open, onDismissRequest = { open = false }) {
                for (bundle in ui.bundles) {
                    val runtime = bundle.manifest?.runtime ?: "?"
                    DropdownMenuItem(
                        text = { Text(if (bundle.usable) "${bundle.name} ($runtime)" else "${bundle.name}: ${bundle.problem}") },
                        enabled = bundle.usable,
                        onClick = {
                            open = false
                            onPick(bundle.name)
                        }
                    )
                }
            }
        }
    }
}

@Composable
private fun IndexLine(ui: UiState, granted: Boolean, onIndex: () -> Unit) {
    val progress = ui.progress
    val stats = ui.stats
    Column(verticalArrangement = Arrangement.spacedBy(4.dp)) {
        Row(verticalAlignment = Alignment.CenterVertically) {
            val summary = when {
                !granted -> "Allow photo access to index the library"
                progress.running && progress.total > 0 -> "Indexing ${progress.done} of ${progress.total} new photos"
                progress.running -> "Looking for new photos"
                stats != null -> "${stats.indexed} photos indexed" + if (stats.failed > 0) ", ${stats.failed} unreadable" else ""
                else -> "Nothing indexed yet"
            }
            Text(summary, Modifier.weight(1f), style = MaterialTheme.typography.bodyMedium)
            Button(onClick = onIndex, enabled = ui.model != null && !progress.running) { Text(if (granted) "Index" else "Allow") }
        }
        if (progress.running && progress.total > 0) {
            LinearProgressIndicator(progress = { progress.done.toFloat() / progress.total }, modifier = Modifier.fillMaxWidth())
        }
        if (stats != null && stats.timedImages > 0) {
            Text(
                "per image on this phone (${stats.runtime}): ${formatMs(stats.embedMsPerImage)} model, " +
                    "${formatMs(stats.prepareMsPerImage)} decode + preprocess",
                style = MaterialTheme.typography.bodySmall
            )
        }
        progress.error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
    }
}

@Composable
private fun ResultsGrid(results: List<ResultItem>, onOpen: (Uri) -> Unit) {
    LazyVerticalGrid(
        columns = GridCells.Adaptive(112.dp),
        horizontalArrangement = Arrangement.spacedBy(4.dp),
        verticalArrangement = Arrangement.spacedBy(4.dp)
    ) {
        items(results, key = { it.uri.toString() }) { item ->
            Column(Modifier.clickable { onOpen(item.uri) }) {
                Thumbnail(item.uri, Modifier.fillMaxWidth().aspectRatio(1f))
                Text(
                    String.format(Locale.ROOT, "%.3f · p=%.2f", item.score, item.probability),
                    style = MaterialTheme.typography.labelSmall
                )
            }
        }
    }
}

@Composable
private fun Thumbnail(uri: Uri, modifier: Modifier) {
    val context = LocalContext.current
    val bitmap by produceState<ImageBitmap?>(initialValue = null, uri) {
        value = withContext(Dispatchers.IO) { loadThumbnail(context, uri)?.asImageBitmap() }
    }
    val current = bitmap
    if (current == null) {
        Box(modifier.background(Color.LightGray))
    } else {
        Image(current, contentDescription = null, modifier = modifier, contentScale = ContentScale.Crop)
    }
}

private fun loadThumbnail(context: Context, uri: Uri): Bitmap? = try {
    if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
        context.contentResolver.loadThumbnail(uri, Size(THUMBNAIL_PX, THUMBNAIL_PX), null)
    } else {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        context.contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, bounds) }
        var sample = 1
        while (minOf(bounds.outWidth, bounds.outHeight) / (sample * 2) >= THUMBNAIL_PX) sample *= 2
        val options = BitmapFactory.Options().apply { inSampleSize = sample }
        context.contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, options) }
    }
} catch (e: IOException) {
    null
} catch (e: SecurityException) {
    null
}

private fun openPhoto(context: Context, uri: Uri) {
    val intent = Intent(Intent.ACTION_VIEW).setDataAndType(uri, "image/*").addFlags(Intent.FLAG_GRANT_READ_URI_PERMISSION)
    try {
        context.startActivity(intent)
    } catch (e: ActivityNotFoundException) {
        Toast.makeText(context, "No app can show this photo", Toast.LENGTH_SHORT).show()
    }
}

private fun photoPermission(): String =
    if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) Manifest.permission.READ_MEDIA_IMAGES
    else Manifest.permission.READ_EXTERNAL_STORAGE

private fun permissionsToAsk(): Array<String> =
    if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) {
        arrayOf(Manifest.permission.READ_MEDIA_IMAGES, Manifest.permission.POST_NOTIFICATIONS)
    } else {
        arrayOf(Manifest.permission.READ_EXTERNAL_STORAGE)
    }

private fun hasPhotoPermission(context: Context): Boolean =
    ContextCompat.checkSelfPermission(context, photoPermission()) == PackageManager.PERMISSION_GRANTED

private fun formatMs(ms: Double): String = String.format(Locale.ROOT, if (ms < 10) "%.1f ms" else "%.0f ms", ms)

private const val THUMBNAIL_PX = 256
