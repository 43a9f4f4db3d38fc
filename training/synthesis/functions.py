"""Function sampling with tree-sitter: every function/method of a commit worth giving a teacher, deterministically.

Files come from git objects at the chosen commit (the working tree is never read). Tests, vendored and
generated code (training/synthesis/code_kinds.py says how each is told), ignored files and very small functions are
skipped, and the report says per language what was skipped and why. Blobs missing from the clone are counted,
not fatal.
"""
from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field
from tree_sitter import Language, Node, Parser, Query, QueryCursor

from training.synthesis.code_kinds import (
    ATTRIBUTES_HOW,
    GENERATED_DIR_MIN_FILES,
    GENERATED_DIR_SHARE,
    GENERATED_FILE,
    Attribution,
    GitAttrError,
    RepoIdentity,
    bundle_marker,
    generated_path_rule,
    generator_header,
    generator_signature,
    header_attributions,
    header_lines,
    identity_root_file,
    linguist_attributes,
    minified_mean_line,
    path_test_rule,
    repo_identity,
    vendored_path_rule,
)
from training.synthesis.gitblobs import ignored_paths, read_blobs, resolve, tree_files

__all__ = ["GENERATED_FILE", "FunctionRef", "SamplingReport", "SkippedFile", "list_functions", "path_skip_reason",
           "plan_samples", "sample_functions", "skip_summary"]

EXTENSIONS = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
              ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
              ".tsx": "tsx", ".go": "go", ".rs": "rust", ".java": "java"}
LANGUAGE_NAME = {"tsx": "typescript"}
"""tsx parses with its own grammar but is reported as TypeScript."""

FUNCTION_NODES = {
    "python": {"function_definition"},
    "javascript": {"function_declaration", "generator_function_declaration", "method_definition"},
    "typescript": {"function_declaration", "generator_function_declaration", "method_definition"},
    "tsx": {"function_declaration", "generator_function_declaration", "method_definition"},
    "go": {"function_declaration", "method_declaration"},
    "rust": {"function_item"},
    "java": {"method_declaration", "constructor_declaration"},
}
SCOPE_NODES = {
    "python": {"class_definition"},
    "javascript": {"class_declaration", "class"},
    "typescript": {"class_declaration", "abstract_class_declaration", "class", "interface_declaration"},
    "tsx": {"class_declaration", "abstract_class_declaration", "class", "interface_declaration"},
    "go": set(),
    "rust": {"impl_item", "trait_item", "mod_item"},
    "java": {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration"},
}
ARROW_VALUES = {"arrow_function", "function_expression", "function", "generator_function"}
"""Function values: `const f = () => {}`, `foo: function () {}`, `obj.foo = function* () {}`."""
NAMED_VALUES = ARROW_VALUES | {"object", "class"}
"""Values whose holder names what is inside: `const api = { get() {} }` gives `api.get`."""
JS_LIKE = ("javascript", "typescript", "tsx")
JS_VALUE_HOLDERS = {
    "variable_declarator": "value",    # const f = () => {}
    "pair": "value",                   # { foo: function () {} }
    "assignment_expression": "right",  # obj.foo = ..., exports.foo = ..., Foo.prototype.bar = ..., module.exports = ...
    "field_definition": "value",       # class A { handle = () => {} }  (JavaScript)
    "public_field_definition": "value",  # (TypeScript)
    "export_statement": "value",       # export default () => {}
}
"""JavaScript/TypeScript nodes that hold a function value, and the field that holds it."""
RUST_TEST_ATTRIBUTE = re.compile(r"^#\[\s*(cfg\s*\(\s*(all\s*\(\s*)?test\b|(\w+::)*test\b)")
"""`#[test]`, `#[tokio::test]`, `#[cfg(test)]`, `#[cfg(all(test, unix))]`."""
MAX_FILE_BYTES = 1_000_000


class FunctionRef(BaseModel):
    commit: str
    file: str
    function: str
    """Qualified name: enclosing classes/impls/functions and the function's own name, joined by dots."""
    language: str
    start_line: int
    """1-based, inclusive."""
    end_line: int


class SkippedFile(BaseModel):
    file: str
    language: str
    reason: str
    """test, vendored, generated, ignored, too_large or missing_blob."""
    rule: str
    """Which rule: test_dir, test_file; gitattributes, vendored_path, library_file, licence_header (vendored);
    gitattributes, generated_name, build_dir, generator_header, bundle, minified, generated_dir (generated); gitignore;
    size; blob."""
    detail: str = ""
    """What matched: the directory, the header line, the other project's holder, the mean line length ..."""


class SamplingReport(BaseModel):
    commit: str
    functions: list[FunctionRef]
    files_total: int
    files_parsed: int
    skipped: dict[str, int] = Field(default_factory=dict)
    """Files of a sampled language not parsed, per reason (test, vendored, generated, ignored, too_large,
    missing_blob)."""
    skipped_per_language: dict[str, dict[str, int]] = Field(default_factory=dict)
    """language -> reason -> files."""
    skip_rules: dict[str, int] = Field(default_factory=dict)
    """"reason/rule" -> files (e.g. "generated/generator_header")."""
    skipped_functions: dict[str, dict[str, int]] = Field(default_factory=dict)
    """language -> reason -> functions skipped inside parsed files (Rust #[test] functions and #[cfg(test)] modules)."""
    skipped_files: list[SkippedFile] = Field(default_factory=list)
    attributes: str = ""
    """How .gitattributes were read (git check-attr on the commit), or why they could not be."""
    identity: list[str] = Field(default_factory=list)
    """What names the repository's own code (for licence headers): see code_kinds.RepoIdentity."""
    per_language: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0


@lru_cache(maxsize=None)
def language_for(grammar: str) -> Language:
    if grammar == "python":
        import tree_sitter_python as mod
        return Language(mod.language())
    if grammar == "javascript":
        import tree_sitter_javascript as mod
        return Language(mod.language())
    if grammar in ("typescript", "tsx"):
        import tree_sitter_typescript as mod
        return Language(mod.language_typescript() if grammar == "typescript" else mod.language_tsx())
    if grammar == "go":
        import tree_sitter_go as mod
        return Language(mod.language())
    if grammar == "rust":
        import tree_sitter_rust as mod
        return Language(mod.language())
    if grammar == "java":
        import tree_sitter_java as mod
        return Language(mod.language())
    raise ValueError(f"no grammar for {grammar!r}")


@lru_cache(maxsize=None)
def parser_for(grammar: str) -> Parser:
    return Parser(language_for(grammar))


@lru_cache(maxsize=None)
def function_query(grammar: str) -> Query:
    """Finds function nodes in C; only their ancestors are walked in Python (a full walk was ~1M nodes on hugo)."""
    lang = language_for(grammar)
    patterns = [f"({kind}) @fn" for kind in sorted(FUNCTION_NODES[grammar]) if lang.id_for_node_kind(kind, True)]
    if grammar in JS_LIKE:
        values = " ".join(f"({v})" for v in sorted(ARROW_VALUES) if lang.id_for_node_kind(v, True))
        for holder, value_field in JS_VALUE_HOLDERS.items():
            if lang.id_for_node_kind(holder, True) and lang.field_id_for_name(value_field) is not None:
                patterns.append(f"({holder} {value_field}: [{values}]) @fn")
    return Query(lang, "\n".join(patterns))


def path_skip_reason(path: str) -> str | None:
    """vendored, test or generated from the path alone (code_kinds' path rules), else None."""
    if vendored_path_rule(path):
        return "vendored"
    if path_test_rule(path):
        return "test"
    if generated_path_rule(path):
        return "generated"
    return None


def node_name(node: Node) -> str | None:
    name = node.child_by_field_name("name")
    if name is not None and name.text is not None:
        return name.text.decode("utf-8", "replace")
    return None


def scope_name(node: Node, grammar: str) -> str | None:
    if grammar == "rust" and node.type == "impl_item":
        target = node.child_by_field_name("type")
        return target.text.decode("utf-8", "replace") if target is not None and target.text else None
    return node_name(node)


def go_receiver(node: Node) -> str | None:
    """`func (s *Server) Start()` -> "Server" (generic parameters dropped)."""
    receiver = node.child_by_field_name("receiver")
    if receiver is None or receiver.text is None:
        return None
    found = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", receiver.text.decode("utf-8", "replace").split("[")[0])
    return found[-1] if found else None


def text_of(node: Node | None) -> str | None:
    if node is None or node.text is None:
        return None
    return " ".join(node.text.decode("utf-8", "replace").split())


def key_name(key: Node | None) -> str | None:
    """An object key or class field as written: `foo`, `'q-x'` -> q-x, `[Symbol.iterator]`, `#secret`."""
    if key is None:
        return None
    text = text_of(key)
    return text[1:-1] if text and key.type == "string" else text


def holder_name(node: Node) -> str | None:
    """The name a JavaScript/TypeScript node gives the function, object or class it holds, else None.

    `const f = () => {}` -> f; `{ foo: function () {} }` -> foo; `exports.foo = ...` -> exports.foo;
    `Foo.prototype.bar = ...` -> Foo.prototype.bar; `this.onClick = ...` -> onClick; `class A { h = () => {} }` -> h;
    `export default () => {}` -> default."""
    value_field = JS_VALUE_HOLDERS.get(node.type)
    if value_field is None:
        return None
    value = node.child_by_field_name(value_field)
    if value is None or value.type not in NAMED_VALUES:
        return None
    if node.type == "variable_declarator":
        return node_name(node)
    if node.type == "pair":
        return key_name(node.child_by_field_name("key"))
    if node.type == "assignment_expression":
        left = text_of(node.child_by_field_name("left"))
        return left[len("this."):] if left and left.startswith("this.") else left
    if node.type == "field_definition":
        return key_name(node.child_by_field_name("property"))
    if node.type == "public_field_definition":
        return key_name(node.child_by_field_name("name"))
    return "default"  # export_statement


def own_name(node: Node, grammar: str) -> str | None:
    """The name a node adds to a qualified name, if it is a function or a scope."""
    if node.type in FUNCTION_NODES[grammar]:
        name = node_name(node)
        if name and grammar == "go" and node.type == "method_declaration":
            receiver = go_receiver(node)
            return f"{receiver}.{name}" if receiver else name
        return name
    if grammar in JS_LIKE and node.type in JS_VALUE_HOLDERS:
        return holder_name(node)
    if node.type in SCOPE_NODES[grammar]:
        return scope_name(node, grammar)
    return None


def qualified_name(node: Node, grammar: str) -> str | None:
    name = own_name(node, grammar)
    if not name:
        return None
    parts = [name]
    parent = node.parent
    while parent is not None:
        if (outer := own_name(parent, grammar)) is not None:
            parts.append(outer)
        parent = parent.parent
    return ".".join(reversed(parts))


def walk_functions(root: Node, grammar: str) -> Iterator[tuple[str, Node]]:
    nodes = QueryCursor(function_query(grammar)).captures(root).get("fn", [])
    for node in sorted(nodes, key=lambda n: n.start_byte):
        if (name := qualified_name(node, grammar)) is not None:
            yield name, node


def rust_attributes(node: Node) -> Iterator[str]:
    """The outer attributes (`#[...]`) right before a Rust item, comments between them allowed."""
    sibling = node.prev_named_sibling
    while sibling is not None and sibling.type in ("attribute_item", "line_comment", "block_comment"):
        if sibling.type == "attribute_item" and (text := text_of(sibling)):
            yield text
        sibling = sibling.prev_named_sibling


def rust_test_code(node: Node) -> bool:
    """A `#[test]` (or `#[tokio::test]` ...) function, or anything inside a `#[cfg(test)]` module."""
    current: Node | None = node
    while current is not None:
        if current.type in ("function_item", "mod_item") and any(
                RUST_TEST_ATTRIBUTE.match(a) for a in rust_attributes(current)):
            return True
        current = current.parent
    return False


def source_functions(source: bytes, grammar: str, min_lines: int = 3
                     ) -> tuple[list[tuple[str, int, int]], Counter[str]]:
    """(qualified name, first line, last line) of each function at least `min_lines` long, and how many functions
    of that length were skipped and why (Rust tests inside source files)."""
    tree = parser_for(grammar).parse(source)
    found: list[tuple[str, int, int]] = []
    skipped: Counter[str] = Counter()
    for qualname, node in walk_functions(tree.root_node, grammar):
        first, last = node.start_point[0] + 1, node.end_point[0] + 1
        if last - first + 1 < min_lines:
            continue
        if grammar == "rust" and rust_test_code(node):
            skipped["test"] += 1
            continue
        found.append((qualname, first, last))
    return found, skipped


def functions_in_source(source: bytes, grammar: str, min_lines: int = 3) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, last line) of each function at least `min_lines` long (tests excluded)."""
    yield from source_functions(source, grammar, min_lines)[0]


@dataclass
class ParsedFile:
    path: str
    grammar: str
    attributions: list[Attribution]
    functions: list[tuple[str, int, int]]
    skipped_functions: Counter[str]


def classify_path(path: str, grammar: str, attrs: dict[str, bool]) -> tuple[str, str, str] | None:
    """(reason, rule, detail) from the path and the repository's attributes, or None to read the file."""
    generated, vendored = attrs.get("linguist-generated"), attrs.get("linguist-vendored")
    if generated:
        return "generated", "gitattributes", "linguist-generated"
    if vendored:
        return "vendored", "gitattributes", "linguist-vendored"
    if vendored is not False and (rule := vendored_path_rule(path)):
        return "vendored", "library_file" if rule.startswith("file ") else "vendored_path", rule
    if rule := path_test_rule(path, grammar):
        return "test", "test_dir" if rule.startswith("dir ") else "test_file", rule
    if generated is not False and (rule := generated_path_rule(path)):
        return "generated", "build_dir" if rule.startswith("dir ") else "generated_name", rule
    return None


def classify_content(data: bytes, grammar: str, attrs: dict[str, bool]) -> tuple[tuple[str, str, str] | None, list]:
    """(reason, rule, detail) from the file's first lines, or None; and the header's attributions (for the licence
    rule, decided once the whole repository is read)."""
    header = header_lines(data)
    if attrs.get("linguist-generated") is not False:
        if line := generator_header(header):
            return ("generated", "generator_header", line), []
        if grammar in JS_LIKE and (bundler := bundle_marker(data)):
            return ("generated", "bundle", bundler), []
        if mean := minified_mean_line(data):
            return ("generated", "minified", f"mean line {mean:.0f} characters"), []
    if attrs.get("linguist-vendored") is False:
        return None, []
    return None, header_attributions(header)


def list_functions(repo: Path, commit: str = "HEAD", min_lines: int = 3) -> SamplingReport:
    started = time.monotonic()
    sha = resolve(repo, commit)
    files = tree_files(repo, sha)
    skipped: list[SkippedFile] = []

    def skip(path: str, grammar: str, reason: str, rule: str, detail: str = "") -> None:
        skipped.append(SkippedFile(file=path, language=LANGUAGE_NAME.get(grammar, grammar), reason=reason, rule=rule,
                                   detail=detail))

    code = [(path, blob, size, grammar) for path, blob, size in files
            if (grammar := EXTENSIONS.get(PurePosixPath(path).suffix.lower())) is not None]
    try:
        attributes, how = linguist_attributes(repo, sha, [c[0] for c in code]), ATTRIBUTES_HOW
    except GitAttrError as e:
        attributes, how = {}, f"not read ({e}); heuristics only"
    if missing := [p for p, _, size in files if PurePosixPath(p).name == ".gitattributes" and size < 0]:
        how += f"; not in this clone, so not read: {', '.join(missing[:5])}"
    candidates = []
    for path, blob, size, grammar in code:
        found = classify_path(path, grammar, attributes.get(path, {}))
        if found is None and size > MAX_FILE_BYTES:
            found = ("too_large", "size", f"{size} bytes")
        if found:
            skip(path, grammar, *found)
        else:
            candidates.append((path, blob, grammar))
    ignored = ignored_paths(repo, [c[0] for c in candidates])
    for path, _, grammar in candidates:
        if path in ignored:
            skip(path, grammar, "ignored", "gitignore")
    candidates = [c for c in candidates if c[0] not in ignored]
    parsed: list[ParsedFile] = []
    blobs = read_blobs(repo, [c[1] for c in candidates])
    for (path, _, grammar), (_, data) in zip(candidates, blobs):
        if data is None:
            skip(path, grammar, "missing_blob", "blob")
            continue
        found, attributions = classify_content(data, grammar, attributes.get(path, {}))
        if found:
            skip(path, grammar, *found)
            continue
        kept, dropped = source_functions(data, grammar, min_lines)
        parsed.append(ParsedFile(path, grammar, attributions, kept, dropped))
    identity = RepoIdentity(sources=["not needed: no header names a holder"])
    if any(p.attributions for p in parsed):
        root = [(path, blob) for path, blob, _ in files if identity_root_file(path)]
        identity = repo_identity(repo, sha, {path: data for (path, _), (_, data) in
                                            zip(root, read_blobs(repo, [b for _, b in root])) if data is not None})
        identity.learn_common([p.attributions for p in parsed])
    generators = generator_dirs(skipped)
    same_dir = Counter((str(PurePosixPath(path).parent), LANGUAGE_NAME.get(g, g)) for path, _, _, g in code)
    functions: list[FunctionRef] = []
    skipped_functions: dict[str, Counter[str]] = {}
    files_parsed = 0
    for p in parsed:
        if other := identity.third_party(p.attributions):
            skip(p.path, p.grammar, "vendored", "licence_header", f"{other.kind}: {other.holder}")
            continue
        key = (str(PurePosixPath(p.path).parent), LANGUAGE_NAME.get(p.grammar, p.grammar))
        if (p.functions and key in generators and attributes.get(p.path, {}).get("linguist-generated") is not False
                and not any(identity.owns(a) for a in p.attributions)):
            signature, n = generators[key].most_common(1)[0]
            others = same_dir[key] - 1
            if n >= GENERATED_DIR_MIN_FILES and n >= GENERATED_DIR_SHARE * others:
                skip(p.path, p.grammar, "generated", "generated_dir", f"beside {n} of {others} files headed "
                                                                      f"{signature!r}")
                continue
        files_parsed += 1
        language = LANGUAGE_NAME.get(p.grammar, p.grammar)
        if p.skipped_functions:
            skipped_functions.setdefault(language, Counter()).update(p.skipped_functions)
        functions.extend(FunctionRef(commit=sha, file=p.path, function=qualname, language=language, start_line=first,
                                     end_line=last) for qualname, first, last in p.functions)
    skipped.sort(key=lambda f: f.file)
    per_language = Counter(f.language for f in functions)
    by_language: dict[str, Counter[str]] = {}
    for f in skipped:
        by_language.setdefault(f.language, Counter())[f.reason] += 1
    return SamplingReport(
        commit=sha, functions=functions, files_total=len(files), files_parsed=files_parsed,
        skipped=dict(sorted(Counter(f.reason for f in skipped).items())),
        skipped_per_language={lang: dict(sorted(c.items())) for lang, c in sorted(by_language.items())},
        skip_rules=dict(sorted(Counter(f"{f.reason}/{f.rule}" for f in skipped).items())),
        skipped_functions={lang: dict(sorted(c.items())) for lang, c in sorted(skipped_functions.items())},
        skipped_files=skipped, attributes=how, identity=identity.sources,
        per_language=dict(sorted(per_language.items())), seconds=time.monotonic() - started)


def generator_dirs(skipped: list[SkippedFile]) -> dict[tuple[str, str], Counter[str]]:
    """(directory, language) -> generator signature -> files with that generator header there."""
    out: dict[tuple[str, str], Counter[str]] = {}
    for f in skipped:
        if f.rule == "generator_header":
            key = (str(PurePosixPath(f.file).parent), f.language)
            out.setdefault(key, Counter())[generator_signature(f.detail)] += 1
    return out


def skip_summary(reports: list[SamplingReport]) -> dict[str, object]:
    """What sampling kept and skipped over all snapshots, for generate's summary: functions per language, files
    skipped per language per reason, files per reason/rule, and skipped functions (Rust tests) per language."""
    kept: Counter[str] = Counter()
    per_language: dict[str, Counter[str]] = {}
    rules: Counter[str] = Counter()
    functions: dict[str, Counter[str]] = {}
    for r in reports:
        kept.update(r.per_language)
        rules.update(r.skip_rules)
        for lang, reasons in r.skipped_per_language.items():
            per_language.setdefault(lang, Counter()).update(reasons)
        for lang, reasons in r.skipped_functions.items():
            functions.setdefault(lang, Counter()).update(reasons)
    return {"functions": dict(sorted(kept.items())),
            "skipped_files": {lang: dict(sorted(c.items())) for lang, c in sorted(per_language.items())},
            "skip_rules": dict(sorted(rules.items())),
            "skipped_functions": {lang: dict(sorted(c.items())) for lang, c in sorted(functions.items())}}


def sample_functions(functions: list[FunctionRef], n: int, seed: int) -> list[FunctionRef]:
    """The first `n` of a seeded shuffle: the same seed gives the same list, and a larger `n` extends it."""
    ordered = sorted(functions, key=lambda f: (f.commit, f.file, f.start_line, f.function))
    random.Random(seed).shuffle(ordered)
    return ordered[:n]


def interleave_snapshots(per_commit: list[list[FunctionRef]]) -> list[FunctionRef]:
    """Round-robin across snapshots so a small --samples still covers every commit."""
    out: list[FunctionRef] = []
    for i in range(max((len(x) for x in per_commit), default=0)):
        out.extend(x[i] for x in per_commit if i < len(x))
    return out


class SamplePlan(BaseModel):
    functions: list[FunctionRef]
    available: int
    reports: list[SamplingReport]


def plan_samples(repo: Path, commits: list[str], n: int, seed: int, min_lines: int = 3) -> SamplePlan:
    """`n` functions across snapshots: each snapshot shuffled with the seed, then taken in turn."""
    reports = [list_functions(repo, c, min_lines) for c in commits]
    shuffled = [sample_functions(r.functions, len(r.functions), seed) for r in reports]
    return SamplePlan(functions=interleave_snapshots(shuffled)[:n], available=sum(len(r.functions) for r in reports),
                      reports=reports)
