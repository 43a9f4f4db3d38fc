"""Sampling picks the repository's own code: one real git fixture per skip rule, and each JS/TS function shape.

Every case builds a small repository under tmp_path, commits it with git, runs `list_functions` and checks, per
file, the reason and rule it was skipped for (or that its functions were kept). Files not named in a case's
expectation are controls that must be kept.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import git
from training.synthesis.code_kinds import (
    generator_header,
    header_attributions,
    header_lines,
    minified_mean_line,
    path_test_rule,
    vendored_path_rule,
)
from training.synthesis.functions import functions_in_source, list_functions, path_skip_reason, skip_summary

AUTHOR = "Nightowl Tester"
PY = "def {name}(x):\n    y = x + 1\n    return y\n"
JS = "function {name}(x) {{\n  const y = x + 1;\n  return y;\n}}\n"
GO = "package p\n\nfunc {name}(x int) int {{\n\ty := x + 1\n\treturn y\n}}\n"
JAVA = "class {name} {{\n  int f(int x) {{\n    int y = x + 1;\n    return y;\n  }}\n}}\n"
TS = "export function {name}(x: number): number {{\n  const y = x + 1;\n  return y;\n}}\n"


def make_repo(root: Path, files: dict[str, str | bytes], message: str = "fixture") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
        git(root, "config", "user.email", "tester@example.com")
        git(root, "config", "user.name", AUTHOR)
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return root


def outcome(report, path: str) -> str | tuple[str, str]:
    """"kept" when the file's functions are in the pool, else (reason, rule)."""
    if any(f.file == path for f in report.functions):
        return "kept"
    skipped = [(s.reason, s.rule) for s in report.skipped_files if s.file == path]
    return skipped[0] if skipped else "parsed without functions"


LICENCE = "MIT License\n\nCopyright (c) 2020 Acme Widgets Inc.\n\nPermission is hereby granted, free of charge...\n"
SNOWBALL = "// Generated from {lang}.sbl by Snowball 3.0.1 - https://snowballstem.org/\n\n" + JS
BROWSERIFY = ("(function(){function r(e,n,t){function o(i,f){if(!n[i]){if(!e[i]){var c=\"function\"==typeof "
              "require&&require;if(!f&&c)return c(i,!0);var a=new Error(\"Cannot find module '\"+i+\"'\");throw "
              "a.code=\"MODULE_NOT_FOUND\",a}}}return o}return r})()({1:[function(require,module,exports){\n")
MINIFIED = "var a=function(){var b=1;return b},c=function(d){return d+1};" * 40 + "\n"
DATA_LINES = "".join(f'    "message {i}": "{"a translated sentence that is rather long " * 3}",\n' for i in range(40))

# name -> (files, {path: expected}); every other file in `files` is expected to be kept.
CASES: dict[str, tuple[dict[str, str], dict[str, object]]] = {
    "test directories, not any path with testing": ({
        "tests/helpers.py": PY.format(name="helper"),
        "pkg/tests/test_unit.py": PY.format(name="unit"),
        "web/__tests__/a.js": JS.format(name="a"),
        "spec/b.js": JS.format(name="b"),
        "src/test/java/Util.java": JAVA.format(name="Util"),
        "src/integrationTest/java/Flow.java": JAVA.format(name="Flow"),
        "internal/testdata/x.go": GO.format(name="fixture"),
        "pkg/testing/fixtures.py": PY.format(name="fixture"),
        "pkg/testing.py": PY.format(name="shipped"),
        "src/main/java/Testable.java": JAVA.format(name="Testable"),
    }, {
        "tests/helpers.py": ("test", "test_dir"), "pkg/tests/test_unit.py": ("test", "test_dir"),
        "web/__tests__/a.js": ("test", "test_dir"), "spec/b.js": ("test", "test_dir"),
        "src/test/java/Util.java": ("test", "test_dir"), "src/integrationTest/java/Flow.java": ("test", "test_dir"),
        "internal/testdata/x.go": ("test", "test_dir"),
    }),
    "test file patterns of each language": ({
        "pkg/test_shapes.py": PY.format(name="t"), "pkg/shapes_test.py": PY.format(name="t"),
        "pkg/conftest.py": PY.format(name="fixture"), "app/tests.py": PY.format(name="t"),
        "server/main_test.go": GO.format(name="TestMain"), "web/app.test.ts": TS.format(name="t"),
        "web/app.spec.js": JS.format(name="t"), "web/view.test.tsx": TS.format(name="t"),
        "src/main/java/AppTest.java": JAVA.format(name="AppTest"),
        "src/main/java/AppIT.java": JAVA.format(name="AppIT"),
        "pkg/shapes.py": PY.format(name="area"), "web/app.ts": TS.format(name="start"),
        "server/main.go": GO.format(name="main"), "pkg/contest.py": PY.format(name="c"),
    }, {
        "pkg/test_shapes.py": ("test", "test_file"), "pkg/shapes_test.py": ("test", "test_file"),
        "pkg/conftest.py": ("test", "test_file"), "app/tests.py": ("test", "test_file"),
        "server/main_test.go": ("test", "test_file"), "web/app.test.ts": ("test", "test_file"),
        "web/app.spec.js": ("test", "test_file"), "web/view.test.tsx": ("test", "test_file"),
        "src/main/java/AppTest.java": ("test", "test_file"), "src/main/java/AppIT.java": ("test", "test_file"),
    }),
    "gitattributes linguist-generated and linguist-vendored, macros, nested files and negations": ({
        ".gitattributes": "[attr]generated linguist-generated=true diff=generated\n"
                          "gen/** generated\n*.auto.js linguist-generated\nlibs/** linguist-vendored\n"
                          "libs/ours.py -linguist-vendored\nvendor/patched.go linguist-vendored=false\n"
                          "pkg/api_pb2.py linguist-generated=false\nsrc/made.py -linguist-generated\n"
                          "weird/_dir/ linguist-generated\n",
        "web/.gitattributes": "legacy.js linguist-vendored\n",
        "gen/client.py": PY.format(name="call"), "web/app.auto.js": JS.format(name="auto"),
        "libs/theirs.py": PY.format(name="theirs"), "libs/ours.py": PY.format(name="ours"),
        "vendor/patched.go": GO.format(name="patched"), "pkg/api_pb2.py": PY.format(name="handwritten"),
        "src/made.py": "# Code generated by hand-rolled tool. DO NOT EDIT.\n" + PY.format(name="made"),
        "web/legacy.js": JS.format(name="legacy"), "legacy.js": JS.format(name="toplevel"),
        "weird/_dir/inside.py": PY.format(name="inside"),  # a directory pattern does not reach files in git
    }, {
        "gen/client.py": ("generated", "gitattributes"), "web/app.auto.js": ("generated", "gitattributes"),
        "libs/theirs.py": ("vendored", "gitattributes"), "web/legacy.js": ("vendored", "gitattributes"),
    }),
    "generator headers at the top, not a mention further down": ({
        "pb/a_pb2.pyi.py": "# -*- coding: utf-8 -*-\n# Generated by the protocol buffer compiler.  DO NOT EDIT!\n"
                           "# source: a.proto\n" + PY.format(name="a"),
        "stem/english-stemmer.js": SNOWBALL.format(lang="english", name="stem"),
        "api/types.go": "// Code generated by protoc-gen-go. DO NOT EDIT.\n// source: api.proto\n\n" + GO.format(
            name="GetName"),
        "api/deep.go": "/*\nCopyright 2024 The Widget Authors.\n\nLicensed under the Apache License.\n*/\n\n"
                       "// Code generated by deepcopy-gen. DO NOT EDIT.\n\n" + GO.format(name="DeepCopy"),
        "web/gen.ts": "/* eslint-disable */\n// @generated by protobuf-ts 2.9.1\n" + TS.format(name="gen"),
        "web/auto.js": '"use strict";\n/* This file is automatically generated. */\n' + JS.format(name="auto"),
        "app/migrations/0001_initial.py": "# Generated by Django 4.2 on 2023-05-01 10:00\n\n" + PY.format(
            name="forwards"),
        "client/model.py": '# coding: utf-8\n\n"""\n    Pet API\n\n    The version of the OpenAPI document: 1.0\n'
                           '    Generated by: https://openapi-generator.tech\n"""\n\n' + PY.format(name="to_dict"),
        "pkg/pages.py": '"""Publish docs on GitHub Pages."""\n\nimport os\n\n\ndef publish(x):\n'
                        '    # a CNAME file auto-generated by the GitHub UI has no newline\n    return x\n',
        "pkg/docs.py": '"""Helpers for auto-generated API documentation."""\n\n' + PY.format(name="helper"),
        "pkg/later.py": PY.format(name="first") + "\n# This file is automatically generated.\n" + PY.format(
            name="second"),
    }, {
        "pb/a_pb2.pyi.py": ("generated", "generator_header"),
        "stem/english-stemmer.js": ("generated", "generator_header"),
        "api/types.go": ("generated", "generator_header"), "api/deep.go": ("generated", "generator_header"),
        "web/gen.ts": ("generated", "generator_header"), "web/auto.js": ("generated", "generator_header"),
        "app/migrations/0001_initial.py": ("generated", "generator_header"),
        "client/model.py": ("generated", "generator_header"),
    }),
    "minified files and bundles": ({
        "web/app.js": MINIFIED, "web/bundle.out.js": "/******/ (() => { // webpackBootstrap\n" + JS.format(name="b"),
        "web/browserified.js": BROWSERIFY + JS.format(name="inner") + "},{}]},{},[1]);\n",
        "web/main.bundle.js": JS.format(name="bundled"),
        "locale/de.js": "Documentation.addTranslations({\n" + DATA_LINES + "});\n" + JS.format(name="plural"),
        "web/own.js": JS.format(name="own"),
    }, {
        "web/app.js": ("generated", "minified"), "web/bundle.out.js": ("generated", "bundle"),
        "web/browserified.js": ("generated", "bundle"), "web/main.bundle.js": ("generated", "generated_name"),
    }),
    "vendored and build paths": ({
        "vendor/github.com/x/y/y.go": GO.format(name="Y"), "third_party/lib/z.py": PY.format(name="z"),
        "web/node_modules/left-pad/index.js": JS.format(name="leftPad"),
        "bower_components/dep/dep.js": JS.format(name="dep"), "app/static/js/lib/chart.js": JS.format(name="chart"),
        "assets/vendor/x.js": JS.format(name="x"), "web/app.min.js": JS.format(name="m"),
        "web/jquery-3.7.1.js": JS.format(name="jq"), "dist/app.js": JS.format(name="dist"),
        "build/lib/pkg/mod.py": PY.format(name="built"), "docs/_build/html/_static/s.js": JS.format(name="s"),
        "src/build/mod.py": PY.format(name="builder"), "app/static/js/main.js": JS.format(name="main"),
        "lib/util.js": JS.format(name="util"), "web/bootstrap.js": JS.format(name="boot"),
    }, {
        "vendor/github.com/x/y/y.go": ("vendored", "vendored_path"),
        "third_party/lib/z.py": ("vendored", "vendored_path"),
        "web/node_modules/left-pad/index.js": ("vendored", "vendored_path"),
        "bower_components/dep/dep.js": ("vendored", "vendored_path"),
        "app/static/js/lib/chart.js": ("vendored", "vendored_path"),
        "assets/vendor/x.js": ("vendored", "vendored_path"),
        "web/app.min.js": ("vendored", "library_file"), "web/jquery-3.7.1.js": ("vendored", "library_file"),
        "dist/app.js": ("generated", "build_dir"), "build/lib/pkg/mod.py": ("generated", "build_dir"),
        "docs/_build/html/_static/s.js": ("generated", "build_dir"),
    }),
    "licence headers of other projects": ({
        "LICENSE": LICENCE,
        "pyproject.toml": '[project]\nname = "widgetry"\n',
        "AUTHORS": "Maintainers\n* Grace Hopper <grace@example.com>\n",
        "static/js/jq.js": "/*! jQuery v3.6.0 | (c) OpenJS Foundation and other contributors | jquery.org/license */\n"
                           + JS.format(name="jq"),
        "static/js/us.js": "//     Underscore.js 1.13.6\n//     https://underscorejs.org\n//     (c) 2009-2022 Jeremy "
                           "Ashkenas, Julian Gonzalez, and DocumentCloud\n//     Underscore may be freely distributed"
                           " under the MIT license.\n\n" + JS.format(name="us"),
        "static/js/mq.js": "/*\ncss3-mediaqueries.js\n\nauthor: Wouter van der Graaf <wouter at example nl>\n"
                           "license: MIT\n*/\n" + JS.format(name="mq"),
        "pkg/copied.go": "// Copyright 2009 The Go Authors. All rights reserved.\n// Use of this source code is "
                         "governed by a BSD-style\n// license that can be found in the LICENSE file.\n\n"
                         + GO.format(name="Round"),
        "pkg/company.py": "# Copyright 2021 Acme Widgets Corporation\n" + PY.format(name="company"),
        "pkg/project.py": "# Copyright 2022 The Widgetry Authors\n" + PY.format(name="project"),
        "pkg/person.py": "# Copyright (c) 2023 Nightowl Tester <t@example.com>\n" + PY.format(name="person"),
        "pkg/listed.py": "# Copyright (c) 2023 Grace Hopper\n" + PY.format(name="listed"),
        "pkg/derived.py": '"""Creates files.\n\nThis is derived from the "autopackage" script, which is:\nCopyright '
                          '2008 Someone Else (SE)\n"""\n\n' + PY.format(name="derived"),
        "pkg/author_only.py": "# Author: Someone Else\n" + PY.format(name="author_only"),
        "pkg/boilerplate.py": "# Redistributions must retain the above copyright notice.\n" + PY.format(name="b"),
        "pkg/later.py": PY.format(name="first") + "# Copyright (c) 2001 Someone Else\n" + PY.format(name="second"),
    }, {
        "static/js/jq.js": ("vendored", "licence_header"), "static/js/us.js": ("vendored", "licence_header"),
        "static/js/mq.js": ("vendored", "licence_header"), "pkg/copied.go": ("vendored", "licence_header"),
    }),
    "a company's header on most files is the repository's own": ({
        **{f"pkg/m{i}.py": f"# Copyright 202{i} Globex LLC\n# Licensed under the Apache License 2.0\n"
           + PY.format(name=f"m{i}") for i in range(4)},
        "pkg/jq.js": "/*! jQuery v3.6.0 | (c) OpenJS Foundation */\n" + JS.format(name="jq"),
    }, {"pkg/jq.js": ("vendored", "licence_header")}),
    "a generator's runtime beside its output": ({
        **{f"stem/{lang}-stemmer.js": SNOWBALL.format(lang=lang, name=f"{lang}Stem")
           for lang in ("english", "french", "german", "dutch", "danish", "greek", "irish", "hindi")},
        "stem/base-stemmer.js": JS.format(name="BaseStemmer"),
        **{f"api/m{i}.go": "// Code generated by protoc-gen-go. DO NOT EDIT.\n" + GO.format(name=f"M{i}")
           for i in range(7)},
        "api/client.go": GO.format(name="Dial"),  # 7 generated files beside it: not enough to call it theirs
    }, {
        **{f"stem/{lang}-stemmer.js": ("generated", "generator_header")
           for lang in ("english", "french", "german", "dutch", "danish", "greek", "irish", "hindi")},
        "stem/base-stemmer.js": ("generated", "generated_dir"),
        **{f"api/m{i}.go": ("generated", "generator_header") for i in range(7)},
    }),
    "ignored files": ({
        ".gitignore": "local_settings.py\n", "local_settings.py": PY.format(name="local"),
    }, {"local_settings.py": ("ignored", "gitignore")}),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_skip_rule(tmp_path, case):
    files, expected = CASES[case]
    if case == "ignored files":
        repo = make_repo(tmp_path / "repo", {k: v for k, v in files.items() if k != "local_settings.py"})
        (repo / "local_settings.py").write_text(files["local_settings.py"])
        git(repo, "add", "-f", "local_settings.py")
        git(repo, "commit", "-qm", "force-add an ignored file")
    else:
        repo = make_repo(tmp_path / "repo", files)
    report = list_functions(repo)
    code = [p for p in files if p.rsplit(".", 1)[-1] in ("py", "js", "ts", "tsx", "go", "java")]
    got = {p: outcome(report, p) for p in code}
    assert got == {p: expected.get(p, "kept") for p in code}
    by_reason: dict[str, int] = {}
    for reason, _ in (v for v in expected.values() if isinstance(v, tuple)):
        by_reason[reason] = by_reason.get(reason, 0) + 1
    assert report.skipped == dict(sorted(by_reason.items()))
    assert sum(sum(r.values()) for r in report.skipped_per_language.values()) == len(expected)
    assert sum(report.skip_rules.values()) == len(expected)


def test_skips_are_reported_per_language_and_rule(tmp_path):
    repo = make_repo(tmp_path / "repo", {
        "pkg/a.py": PY.format(name="a"), "tests/t.py": PY.format(name="t"), "web/app.js": JS.format(name="app"),
        "web/app.test.js": JS.format(name="t"), "stem/x.js": SNOWBALL.format(lang="x", name="x"),
        "vendor/v.go": GO.format(name="V"), "main.go": GO.format(name="main")})
    report = list_functions(repo)
    assert report.skipped_per_language == {"go": {"vendored": 1}, "javascript": {"generated": 1, "test": 1},
                                           "python": {"test": 1}}
    assert report.skip_rules == {"generated/generator_header": 1, "test/test_dir": 1, "test/test_file": 1,
                                 "vendored/vendored_path": 1}
    detail = {s.file: s.detail for s in report.skipped_files}
    assert detail["stem/x.js"].startswith("Generated from x.sbl by Snowball") and detail["vendor/v.go"] == "dir vendor/"
    summary = skip_summary([report, report])
    assert summary["functions"] == {"go": 2, "javascript": 2, "python": 2}
    assert summary["skipped_files"]["javascript"] == {"generated": 2, "test": 2}
    assert summary["skip_rules"]["test/test_file"] == 2


def test_attributes_come_from_the_sampled_commit_not_the_working_tree(tmp_path):
    repo = make_repo(tmp_path / "repo", {".gitattributes": "gen/** linguist-generated\n",
                                         "gen/a.py": PY.format(name="a"), "src/b.py": PY.format(name="b")})
    first = git(repo, "rev-parse", "HEAD").strip()
    make_repo(repo, {".gitattributes": "src/** linguist-generated\n"}, "swap")
    (repo / ".gitattributes").write_text("* linguist-vendored\n")  # uncommitted: never read
    now = list_functions(repo)
    assert (outcome(now, "gen/a.py"), outcome(now, "src/b.py")) == ("kept", ("generated", "gitattributes"))
    then = list_functions(repo, first)
    assert (outcome(then, "gen/a.py"), outcome(then, "src/b.py")) == (("generated", "gitattributes"), "kept")
    assert not (repo / ".git" / "index.lock").exists() and git(repo, "status", "--porcelain") == " M .gitattributes\n"


def test_a_gitattributes_file_missing_from_the_clone_is_reported_not_fatal(tmp_path):
    repo = make_repo(tmp_path / "repo", {".gitattributes": "gen/** linguist-generated\n",
                                         "gen/a.py": PY.format(name="a")})
    sha = git(repo, "rev-parse", "HEAD:.gitattributes").strip()
    (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()
    report = list_functions(repo)
    assert outcome(report, "gen/a.py") == "kept"
    assert report.attributes.endswith("not in this clone, so not read: .gitattributes")


def test_rust_tests_inside_source_files_are_skipped(tmp_path):
    source = ("pub fn add(a: i32, b: i32) -> i32 {\n    let c = a + b;\n    c\n}\n\n"
              "#[test]\nfn adds() {\n    let c = add(1, 2);\n    assert_eq!(c, 3);\n}\n\n"
              "#[cfg(test)]\nmod tests {\n    use super::*;\n\n"
              "    fn helper() -> i32 {\n        let x = 1;\n        x\n    }\n\n"
              "    #[tokio::test]\n    async fn runs() {\n        let x = helper();\n"
              "        assert_eq!(x, 1);\n    }\n}\n")
    report = list_functions(make_repo(tmp_path / "repo", {"src/lib.rs": source}))
    assert [f.function for f in report.functions] == ["add"]
    assert report.skipped_functions == {"rust": {"test": 3}}


JS_SHAPES = [
    ("object literal method", "const api = {\n  get() {\n    return 1;\n  },\n};", ["api.get"]),
    ("object key: function", "const api = {\n  get: function () {\n    return 1;\n  },\n};", ["api.get"]),
    ("object key: arrow", "var Scorer = {\n  score: (r) => {\n    return r;\n  },\n};", ["Scorer.score"]),
    ("quoted and nested keys", "const api = {\n  'kebab-key': () => 1,\n  nested: {\n    deep() {},\n  },\n};",
     ["api.kebab-key", "api.nested.deep"]),
    ("property assignment", "obj.foo = function () {\n  return 1;\n};", ["obj.foo"]),
    ("module.exports.foo", "module.exports.foo = () => {\n  return 1;\n};", ["module.exports.foo"]),
    ("exports.foo (named function)", "exports.foo = function named() {\n  return 1;\n};", ["exports.foo"]),
    ("prototype method", "Foo.prototype.bar = function () {\n  return this.x;\n};", ["Foo.prototype.bar"]),
    ("module.exports = function", "module.exports = function () {\n  return 1;\n};", ["module.exports"]),
    ("module.exports = object", "module.exports = {\n  a() {\n    return 1;\n  },\n};", ["module.exports.a"]),
    ("constructor assigning this.x", "Base = function () {\n  this.reset = function () {\n    return 0;\n  };\n};",
     ["Base", "Base.reset"]),
    ("class field arrow", "class A {\n  handle = () => {\n    return 1;\n  };\n  static make = function () {};\n}",
     ["A.handle", "A.make"]),
    ("class method", "class A {\n  m() {\n    return 1;\n  }\n}", ["A.m"]),
    ("class expression", "const A = class {\n  m() {\n    return 1;\n  }\n};", ["A.m"]),
    ("export default function", "export default function () {\n  return 1;\n}", ["default"]),
    ("export default arrow", "export default () => {\n  return 1;\n};", ["default"]),
    ("generator expression", "const gen = function* () {\n  yield 1;\n};", ["gen"]),
    ("declaration and arrow", "function f() {\n  return 1;\n}\nconst g = (x) => x;", ["f", "g"]),
    ("callbacks are not named functions", "app.get('/x', function (req) {\n  return req;\n});\nconst x = 1;", []),
]
TS_SHAPES = [
    ("typed object method", "const api: Api = {\n  get(): number {\n    return 1;\n  },\n};", ["api.get"]),
    ("typed class field arrow", "class S {\n  private h = (x: number): void => {\n    this.x = x;\n  };\n}", ["S.h"]),
    ("typed property assignment", "exports.run = async (x: string): Promise<void> => {\n  await go(x);\n};",
     ["exports.run"]),
]


@pytest.mark.parametrize("grammar", ["javascript", "typescript", "tsx"])
@pytest.mark.parametrize("shape,source,names", JS_SHAPES, ids=[s[0] for s in JS_SHAPES])
def test_javascript_function_shapes(grammar, shape, source, names):
    assert [name for name, _, _ in functions_in_source(source.encode(), grammar, min_lines=1)] == names


@pytest.mark.parametrize("grammar", ["typescript", "tsx"])
@pytest.mark.parametrize("shape,source,names", TS_SHAPES, ids=[s[0] for s in TS_SHAPES])
def test_typescript_function_shapes(grammar, shape, source, names):
    assert [name for name, _, _ in functions_in_source(source.encode(), grammar, min_lines=1)] == names


def test_shapes_reach_the_pool_with_their_lines(tmp_path):
    source = ("const api = {\n  get() {\n    return 1;\n  },\n  put: function (x) {\n    return x;\n  },\n};\n"
              "exports.run = () => {\n  const y = 2;\n  return y;\n};\n")
    report = list_functions(make_repo(tmp_path / "repo", {"web/api.js": source}), min_lines=3)
    assert {(f.function, f.start_line, f.end_line) for f in report.functions} == {
        ("api.get", 2, 4), ("api.put", 5, 7), ("exports.run", 9, 12)}


# Unit tables for the rules' edges (the fixtures above run them end to end).

@pytest.mark.parametrize("path,expected", [
    ("tests/x.py", "dir tests/"), ("a/Test/B.java", "dir Test/"), ("src/androidTest/A.java", "dir src/androidTest/"),
    ("pkg/testing/util.py", None), ("testing/__init__.py", None), ("pkg/latest.py", None),
    ("a/test_b.py", "file test_b.py"), ("a/b_test.go", "file b_test.go"), ("a/b.spec.mjs", "file b.spec.mjs"),
    ("a/TestFoo.java", "file TestFoo.java"), ("a/Testable.java", None), ("a/attest.py", None),
])
def test_test_rule(path, expected):
    assert path_test_rule(path) == expected


@pytest.mark.parametrize("path,expected", [
    ("node_modules/a/b.js", "dir node_modules/"), ("x/Vendor/y.go", "dir Vendor/"),
    ("public/js/libs/a.js", "dir public/js/libs/"), ("lib/a.js", None), ("src/lib/a.js", None),
    ("a/underscore-min.js", "file underscore-min.js"), ("a/jquery.js", "file jquery.js"), ("a/myjquery.js", None),
])
def test_vendored_path_rule(path, expected):
    assert vendored_path_rule(path) == expected


def test_path_skip_reason_keeps_its_contract_for_history():
    assert [path_skip_reason(p) for p in ("vendor/a.go", "tests/a.py", "a_pb2.py", "sphinx/testing/util.py")] == [
        "vendored", "test", "generated", None]


@pytest.mark.parametrize("text,expected", [
    ("#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n# Generated by the protocol buffer compiler.  DO NOT EDIT!\n",
     "Generated by the protocol buffer compiler.  DO NOT EDIT!"),
    ("// Code generated by mockgen. DO NOT EDIT.\npackage x\n", "Code generated by mockgen. DO NOT EDIT."),
    ("/**\n * @generated SignedSource<<abc>>\n */\n", "@generated SignedSource<<abc>>"),
    ("# Autogenerated by Thrift Compiler (0.9.3)\n", "Autogenerated by Thrift Compiler (0.9.3)"),
    ("/* Generated by Cython 3.0.0 */\n", "Generated by Cython 3.0.0 */"),
    ("// <auto-generated>\n//     This code was generated by a tool.\n// </auto-generated>\n",
     "This code was generated by a tool."),
    ("# This file is autogenerated.\n", "This file is autogenerated."),
    ('"""Helpers for auto-generated API docs."""\n', None),
    ("# Generation of reports.\n", None),
    ("import os\n# This file is automatically generated.\n", None),
    ("def f():\n    pass\n# Code generated by x. DO NOT EDIT.\n", None),
])
def test_generator_header(text, expected):
    assert generator_header(header_lines(text.encode())) == expected


def test_minified_is_long_lines_not_long_strings():
    assert minified_mean_line(MINIFIED.encode()) is not None
    assert minified_mean_line(("Documentation.addTranslations({\n" + DATA_LINES + "});\n").encode()) is None
    assert minified_mean_line(b"") is None


@pytest.mark.parametrize("text,holders", [
    ("/*! jQuery v3.6.0 | (c) OpenJS Foundation and other contributors */",
     {"jQuery", "OpenJS Foundation and other contributors"}),
    ("# Copyright (c) 2007-2026 by the Sphinx team (see AUTHORS file).", {"the Sphinx team"}),
    ("// Copyright 2018-present, Yuxi (Evan) You and Vue contributors", {"Yuxi You and Vue contributors"}),
    ("# Copyright 2020 Google LLC\n# Licensed under the Apache License, Version 2.0", {"Google LLC"}),
    ("# THE SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS", set()),
    ("/*\n * Copyright 2002-2020 the original author or authors.\n */", set()),
    ("# @author Jane Roe", set()),  # an author line counts only beside a licence statement
    ("# @author Jane Roe\n# License: MIT", {"Jane Roe"}),
])
def test_header_attributions(text, holders):
    assert {a.holder for a in header_attributions(header_lines(text.encode()))} == holders
