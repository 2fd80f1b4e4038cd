"""Rendering of macro specs into IJ1 or Fiji-flavour ImageJ macro text."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from ..imagej.params import FIJI_GUARD_MARK, ijm_string

FLAVOURS = ("ij1", "fiji")


@dataclass(frozen=True)
class Param:
    """One macro parameter.

    ``kind`` is one of ``dir``, ``file``, ``str``, ``choice``, ``float``, ``int``, ``bool``.
    ``runtime=False`` marks a generation-time option that shapes the macro body (e.g. the
    LUT table embedded by ``lut-inline-batch``) instead of becoming a macro variable.
    """

    name: str
    kind: str
    default: object
    label: str
    help: str
    choices: tuple[str, ...] = ()
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    runtime: bool = True


@dataclass(frozen=True)
class MacroSpec:
    """A generated macro: its parameters and a body builder ``body(values) -> str``."""

    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    body: object  # Callable[[dict], str]
    example_args: dict = field(default_factory=dict)

    @property
    def runtime_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.runtime)


def check_value(spec: MacroSpec, p: Param, value: object) -> object:
    """Validate and normalise one parameter value (errors name the macro and parameter)."""
    where = f"macro {spec.name!r}, parameter {p.name!r}"
    if p.kind == "bool":
        if isinstance(value, str):
            low = value.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise InputError(f"{where}: {value!r} is not true/false")
            return low in ("true", "1", "yes")
        return bool(value)
    if p.kind in ("float", "int"):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: {value!r} is not a number") from exc
        if p.kind == "int":
            if number != int(number):
                raise InputError(f"{where}: {value!r} is not a whole number")
            number = int(number)
        if (p.minimum is not None and number < p.minimum) or (p.maximum is not None and number > p.maximum):
            raise InputError(f"{where}: {value} is outside {p.minimum}..{p.maximum}")
        return number
    text = "" if value is None else str(value)
    if p.kind == "choice" and text not in p.choices:
        raise InputError(f"{where}: {text!r} is not one of {', '.join(p.choices)}")
    if "\n" in text:
        raise InputError(f"{where}: values cannot contain line breaks")
    return text


def _ijm_value(p: Param, value: object) -> str:
    if p.kind == "bool":
        return "true" if value else "false"
    if p.kind in ("float", "int"):
        return repr(value)
    return ijm_string(str(value))


def _fiji_line(p: Param, value: object) -> str:
    attrs = [f"label={ijm_string(p.label)}"]
    if p.kind in ("dir", "file") and p.required:
        kind = "File"
        attrs.append('style="directory"' if p.kind == "dir" else 'style="file"')
        if value:
            attrs.append(f"value={ijm_string(str(value))}")
    elif p.kind == "bool":
        kind = "Boolean"
        attrs.append(f"value={'true' if value else 'false'}")
    elif p.kind == "float":
        kind = "Double"
        attrs.append(f"value={value!r}")
    elif p.kind == "int":
        kind = "Integer"
        attrs.append(f"value={value!r}")
    else:
        # Optional paths are Strings: an unset optional File would leave the variable undefined.
        kind = "String"
        if p.kind == "choice":
            attrs.append("choices={" + ",".join(ijm_string(c) for c in p.choices) + "}")
        attrs.append(f"value={ijm_string(str(value))}")
    if p.kind in ("float", "int"):
        if p.minimum is not None:
            attrs.append(f"min={p.minimum!r}")
        if p.maximum is not None:
            attrs.append(f"max={p.maximum!r}")
    attrs.append(f"description={ijm_string(p.help)}")
    return f"#@ {kind} ({', '.join(attrs)}) {p.name}"


def _normalise_line(p: Param) -> str:
    """Body-side conversion so that both flavours see the same kinds of values."""
    if p.kind == "bool":
        return f'{p.name} = pyquintBool("" + {p.name});'
    if p.kind in ("float", "int"):
        return f'{p.name} = pyquintNumber("" + {p.name}, "{p.name}");'
    return f'{p.name} = "" + {p.name};'


def render(spec: MacroSpec, flavour: str, values: dict, body: str, generator_cmd: str) -> str:
    """Header (parameters), body and helper functions as one macro text."""
    if flavour not in FLAVOURS:
        raise InputError(f"unknown flavour {flavour!r}; use ij1 (plain ImageJ 1.x) or fiji (#@ parameters)")
    rt = spec.runtime_params
    width = max((len(p.name) for p in rt), default=4)
    doc = [f"//   {p.name.ljust(width)}  {p.help}" + ("" if p.kind != "choice" else f" ({', '.join(p.choices)})")
           for p in rt]
    out: list[str] = []
    if flavour == "fiji":
        # Fiji (SciJava) reads #@ lines anywhere and blanks them before the macro runs; plain
        # ImageJ 1.x would stop at the first one with a modal "Macro Error" dialog (a hang
        # under -batch), so the guard before them exits at once with what to do instead.
        ij1_file = macro_filename_hint(spec.name)
        out += [f"// pyquint: {spec.title} (Fiji flavour)", FIJI_GUARD.format(ij1=ij1_file)]
        out += [_fiji_line(p, values[p.name]) for p in rt]
    out += [f"// pyquint: {spec.title}"]
    out += ["// " + line if line else "//" for line in spec.description.splitlines()]
    out += ["//", f"// Generated by: {generator_cmd}", "// Parameters:"] + doc
    if flavour == "ij1":
        example = "|".join(f"{k}={v}" for k, v in spec.example_args.items())
        out += [
            "// Flavour ij1 (plain ImageJ 1.x and Fiji): edit the values below, or pass",
            "// key=value pairs separated by | (or the values in the order above) as the argument:",
            f'//   xvfb-run -a java -jar ij.jar -batch THIS.ijm "{example}"',
            "//   (add -Dplugins.dir=HOME for an ImageJ home with plugins/ and luts/: `pyquint imagej prepare-home`)",
            "",
        ]
        out += [f"{p.name} = {_ijm_value(p, values[p.name])};" for p in rt]
        names = ", ".join(ijm_string(p.name) for p in rt)
        out += [
            "",
            "pyquintArgs = getArgument();",
            f"pyquintNames = newArray({names});",
            "pyquintCheckArgs(pyquintArgs, pyquintNames);",
        ]
        out += [
            f"{p.name} = pyquintArg(pyquintArgs, pyquintNames, {ijm_string(p.name)}, {i}, {p.name});"
            for i, p in enumerate(rt)
        ]
    else:
        out += [
            "// Flavour fiji (ImageJ2/Fiji script parameters): run from the Fiji script editor, or",
            "//   ImageJ-linux64 --headless --run THIS.ijm 'inDir=\"/data/in\",outDir=\"/data/out\"'",
            "//   (plain ImageJ 1.x cannot read #@ lines; use the ij1 flavour or pyquint imagej run-macro)",
            "",
        ]
    out += [_normalise_line(p) for p in rt]
    out += ["", body.strip("\n"), "", HELPERS.strip("\n"), ""]
    return "\n".join(out)


FIJI_GUARD = (
    'if (!pyquintInFiji()) exit("pyquint: this is the Fiji flavour (#@ script parameters), which plain '
    "ImageJ 1.x cannot read: run it in Fiji (script editor, or ImageJ-linux64 --headless --run), "
    'use imagej_macros/{ij1} with plain ImageJ, or `pyquint imagej run-macro`"); ' + FIJI_GUARD_MARK
)


def macro_filename_hint(name: str) -> str:
    """The ij1 twin of a macro in ``imagej_macros/`` (named in the Fiji flavour's guard)."""
    return f"ij1/{name.replace('-', '_')}.ijm"


HELPERS = r"""
// ---------------------------------------------------------------- pyquint helper functions
function pyquintInFiji() {
	// Fiji/ImageJ2 (imagej-legacy): launched with imagej.dir set, or jars/imagej-legacy-*.jar.
	dir = getInfo("imagej.dir");
	if (dir != "" && dir != "Invalid key" && dir != "null") return true;
	jars = getDirectory("imagej") + "jars" + File.separator;
	if (!File.isDirectory(jars)) return false;
	list = getFileList(jars);
	for (i = 0; i < list.length; i++)
		if (startsWith(list[i], "imagej-legacy")) return true;
	return false;
}
function pyquintCheckArgs(args, names) {
	// Every key=value argument must name a parameter (catches typos).
	if (args == "" || !pyquintKeyed(args, names)) return;
	parts = split(args, "(\\|)");
	for (i = 0; i < parts.length; i++) {
		known = false;
		for (j = 0; j < names.length; j++)
			if (startsWith(parts[i], names[j] + "=")) known = true;
		if (!known) exit("pyquint: unknown argument '" + parts[i] + "'; parameters are " + String.join(names, ", "));
	}
}
function pyquintKeyed(args, names) {
	parts = split(args, "(\\|)");
	for (i = 0; i < parts.length; i++)
		for (j = 0; j < names.length; j++)
			if (startsWith(parts[i], names[j] + "=")) return true;
	return false;
}
function pyquintArg(args, names, key, position, fallback) {
	// The value of key=... in the |-separated argument, else the value at this position.
	if (args == "") return fallback;
	parts = split(args, "(\\|)");
	if (pyquintKeyed(args, names)) {
		for (i = 0; i < parts.length; i++)
			if (startsWith(parts[i], key + "=")) return substring(parts[i], lengthOf(key) + 1);
		return fallback;
	}
	// (no short-circuit && in the macro language: test the index first)
	if (position < parts.length) {
		if (parts[position] != "") return parts[position];
	}
	return fallback;
}
function pyquintBool(value) {
	value = toLowerCase(value);
	return value == "true" || value == "1" || value == "yes";
}
function pyquintNumber(value, name) {
	number = parseFloat(value);
	if (isNaN(number)) exit("pyquint: parameter " + name + " must be a number, not '" + value + "'");
	return number;
}
function pyquintDir(path) {
	// A folder path ending with a separator ("" stays "").
	if (path == "" || endsWith(path, "/") || endsWith(path, "\\")) return path;
	return path + File.separator;
}
function pyquintInputDir(path) {
	if (path == "") exit("pyquint: no input folder given (parameter inDir)");
	path = pyquintDir(path);
	if (!File.isDirectory(path)) exit("pyquint: input folder not found: " + path);
	return path;
}
function pyquintOutputDir(path, inDir) {
	if (path == "") exit("pyquint: no output folder given (parameter outDir)");
	path = pyquintDir(path);
	if (!File.isDirectory(path)) File.makeDirectory(path);
	if (!File.isDirectory(path)) exit("pyquint: cannot create the output folder " + path);
	if (inDir != "" && path == inDir)
		exit("pyquint: the output folder must differ from the input folder (inputs are never overwritten)");
	return path;
}
function pyquintWanted(name, suffixes) {
	// Files (not folders, not hidden) whose name ends with one of the comma-separated suffixes.
	if (endsWith(name, "/") || startsWith(name, ".")) return false;
	list = split(suffixes, ",");
	lower = toLowerCase(name);
	for (k = 0; k < list.length; k++)
		if (endsWith(lower, toLowerCase(String.trim(list[k])))) return true;
	return false;
}
function pyquintStem(name) {
	dot = lastIndexOf(name, ".");
	if (dot > 0) return substring(name, 0, dot);
	return name;
}
function pyquintSave(format, path) {
	// Write beside the target under a hidden name, then rename: never a half-written output.
	tmp = File.getDirectory(path) + ".pyquint-part-" + File.getName(path);
	saveAs(format, tmp);
	if (File.exists(path)) deleted = File.delete(path);
	if (!File.rename(tmp, path)) exit("pyquint: could not write " + path);
}
function pyquintLabels8(name) {
	// A label image as 8 bits without rescaling (ImageJ would scale 16-bit 1,2,3 to 0,85,171).
	if (bitDepth() == 24) exit("pyquint: " + name + " is an RGB image, not a label image");
	if (bitDepth() == 8) return;
	getRawStatistics(count, mean, min, max);
	if (min < 0 || max > 255) exit("pyquint: " + name + ": labels " + min + ".." + max + " do not fit 8 bits (0..255)");
	setOption("ScaleConversions", false);
	run("8-bit");
	setOption("ScaleConversions", true);
}
"""
