"""Subprocess side of :func:`pyquint.imagej.run_macro` (``python -m pyquint.imagej._worker``).

Runs one IJ1 macro the way ``java -jar ij.jar -batch macro arg`` does (no ImageJ window,
``print`` to stdout), but inside a JVM started by JPype so that a watchdog thread can see
ImageJ's dialogs: in ``-batch`` mode a macro error, an unknown command or a
``waitForUser`` opens a *modal* dialog and the process would wait forever. The watchdog
reads the dialog's text, writes it to the result file and ends the process at once.

Result file (JSON): ``{"status": "ok"|"aborted"|"dialog"|"exception", "value", "title", "text"}``.
Not a public interface; the parent builds the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time


def _write_result(path: str, payload: dict) -> None:
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    os.replace(tmp, path)


def _finish(code: int) -> None:
    try:
        import jpype

        System = jpype.JClass("java.lang.System")
        System.out.flush()
        System.err.flush()
    except Exception:  # noqa: BLE001, S110 - JVM may already be gone
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _component_texts(container, out: list[str]) -> list[str]:
    """Visible text of a dialog: Labels, text fields/areas and ImageJ's MultiLineLabel."""
    import jpype

    Container = jpype.JClass("java.awt.Container")

    for comp in container.getComponents():
        name = str(comp.getClass().getName())
        if name == "ij.gui.MultiLineLabel":
            field = comp.getClass().getDeclaredField("lines")
            field.setAccessible(True)
            lines = field.get(comp)
            if lines is not None:
                out.append("\n".join(str(s) for s in lines))
        elif hasattr(comp, "getText"):
            try:
                text = comp.getText()
            except Exception:  # noqa: BLE001 - e.g. buttons without text
                text = None
            if text is not None and str(text).strip() and name not in (
                "java.awt.Button", "javax.swing.JButton", "java.awt.Checkbox",
            ):
                out.append(str(text))
        if isinstance(comp, Container):
            _component_texts(comp, out)
    return out


def _watch(result_path: str, interval: float) -> None:
    import jpype

    Dialog, Window = jpype.JClass("java.awt.Dialog"), jpype.JClass("java.awt.Window")

    while True:
        for win in Window.getWindows():
            try:
                if not win.isShowing():
                    continue
                title = str(win.getTitle()) if hasattr(win, "getTitle") else ""
                if isinstance(win, Dialog):
                    status = "dialog"
                    text = "\n".join(_component_texts(win, []))
                elif str(win.getClass().getName()) == "ij.text.TextWindow" and title == "Exception":
                    status = "exception"
                    text = str(win.getTextPanel().getText())
                else:
                    continue
            except Exception:  # noqa: BLE001 - window closed while being read
                continue
            _write_result(result_path, {"status": status, "title": title, "text": text})
            print(f"[pyquint] ImageJ opened a '{title}' dialog: {text}", file=sys.stderr)
            _finish(3)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pyquint.imagej._worker")
    parser.add_argument("--jvm", required=True)
    parser.add_argument("--classpath", action="append", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--option", action="append", default=[])
    parser.add_argument("--arg", default=None)
    parser.add_argument("macro")
    ns = parser.parse_args(argv)

    import jpype

    jpype.startJVM(ns.jvm, f"-Dplugins.dir={ns.home}", *ns.option, classpath=ns.classpath,
                   convertStrings=True)
    # The watchdog must be running before the macro: its first dialog blocks the main thread.
    threading.Thread(target=_watch, args=(ns.result, 0.05), daemon=True).start()
    try:  # a damaged jar fails here: report it and leave at once (no JVM shutdown wait)
        IJ, Prefs = jpype.JClass("ij.IJ"), jpype.JClass("ij.Prefs")
        Prefs.load(None, None)  # what ImageJ.main does for -batch
        value = IJ.runMacroFile(ns.macro, ns.arg)
    except Exception as exc:  # noqa: BLE001 - report any Java/Python failure
        _write_result(ns.result, {"status": "exception", "title": type(exc).__name__, "text": str(exc)})
        _finish(4)
    value = None if value is None else str(value)
    status = "aborted" if value == "[aborted]" else "ok"
    _write_result(ns.result, {"status": status, "value": value})
    _finish(0)


if __name__ == "__main__":
    main()
