"""Line-level recall as the SVG reference defines it: hand-computed cases and properties."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.synthesis.recall import changed_lines, line_recall

P1 = """diff --git a/app.py b/app.py
index 1111111..2222222 100644
--- a/app.py
+++ b/app.py
@@ -1,4 +1,5 @@
 def add(a, b):
-    return a - b
+    return a + b
+
+    # unreachable
 x = 1
"""
# changed lines of P1: "-    return a - b", "+    return a + b", "+    # unreachable" (the blank "+" is skipped)

SAME_AS_P1_OTHER_HEADERS = P1.replace("index 1111111..2222222", "index 3333333..4444444").replace("@@ -1,4 +1,5 @@", "@@ -10,4 +10,5 @@")
PARTIAL = """--- a/app.py
+++ b/app.py
@@ -1,2 +1,2 @@
-    return a - b
+    return b + a
"""
REORDERED = """--- a/app.py
+++ b/app.py
@@ -1,3 +1,3 @@
+    # unreachable
+    return a + b
-    return a - b
"""
INDENT_ONLY = """--- a/app.py
+++ b/app.py
@@ -1,3 +1,3 @@
-  return a - b
+  return a + b
+    # unreachable
"""
NEW_FILE_P1 = """diff --git a/new.py b/new.py
new file mode 100644
index 0000000..e69de29
--- /dev/null
+++ b/new.py
@@ -0,0 +1,3 @@
+def f():
+    return 1
+def f():
"""
NEW_FILE_P2 = """diff --git a/other_name.py b/other_name.py
new file mode 100644
--- /dev/null
+++ b/other_name.py
@@ -0,0 +1,2 @@
+def f():
+    return 1
"""
ONLY_BLANK = """--- a/app.py
+++ b/app.py
@@ -1,2 +1,3 @@
+
+   \t
"""


@pytest.mark.parametrize("p1, p2, recall, matched, total", [
    pytest.param(P1, P1, 1.0, 3, 3, id="identical"),
    pytest.param(P1, SAME_AS_P1_OTHER_HEADERS, 1.0, 3, 3, id="identical-lines-other-headers"),
    pytest.param(P1, PARTIAL, 1 / 3, 1, 3, id="partial"),
    pytest.param(P1, REORDERED, 1.0, 3, 3, id="reordered"),
    pytest.param(P1, INDENT_ONLY, 1 / 3, 1, 3, id="indentation-differs"),
    pytest.param(NEW_FILE_P1, NEW_FILE_P2, 2 / 3, 2, 3, id="new-files-multiset"),
    pytest.param(NEW_FILE_P2, NEW_FILE_P1, 1.0, 2, 2, id="new-files-reverse"),
    pytest.param("", P1, None, 0, 0, id="empty-t1-undefined"),
    pytest.param(ONLY_BLANK, P1, None, 0, 0, id="blank-only-t1-undefined"),
    pytest.param(P1, "", 0.0, 0, 3, id="empty-t2"),
])
def test_recall_table(p1, p2, recall, matched, total):
    result = line_recall(p1, p2)
    assert (result.matched, result.total) == (matched, total)
    if recall is None:
        assert result.recall is None
    else:
        assert result.recall == pytest.approx(recall)


def test_changed_lines_drop_headers_and_keep_sign_and_indentation():
    assert changed_lines(P1) == ["-    return a - b", "+    return a + b", "+    # unreachable"]
    assert changed_lines(NEW_FILE_P1) == ["+def f():", "+    return 1", "+def f():"]


line = st.text(alphabet=st.sampled_from(list("ab \t#-+@d")), max_size=6)
patch = st.lists(st.tuples(st.sampled_from(["+", "-", " ", "@@ ", "--- ", "+++ ", "diff "]), line), max_size=25).map(
    lambda rows: "\n".join(sign + text for sign, text in rows))


@settings(max_examples=300, deadline=None)
@given(patch, patch)
def test_recall_is_a_fraction_and_identical_is_one(p1, p2):
    result = line_recall(p1, p2)
    assert 0 <= result.matched <= result.total
    if result.total == 0:
        assert result.recall is None
    else:
        assert 0.0 <= result.recall <= 1.0
        assert line_recall(p1, p1).recall == 1.0
        # adding lines to T2 never lowers recall
        assert line_recall(p1, p2 + "\n" + p1).recall == 1.0
