package siglip2.core

/** A problem with the user's input or files, described in one actionable line (shown as is in the app). */
open class Siglip2Exception(message: String) : Exception(message)

/** A bundle whose manifest is missing, malformed, or does not match its files. */
class BundleException(message: String) : Siglip2Exception(message)

/** A tokenizer file that cannot be read, or uses a feature this tokenizer does not implement. */
class TokenizerException(message: String) : Siglip2Exception(message)

/** Pixels or vectors of the wrong size or shape. */
class InputException(message: String) : Siglip2Exception(message)
