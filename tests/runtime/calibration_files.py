"""Small image files that carry a calibration as microscopes and their programs write it.

Each writer puts the calibration where the real format keeps it, in the layout
the reading library parses (tifffile for TIFF tags, rosettasciio for DM,
mrcfile for MRC), so the tests read what a lab's files hold:
- ImageJ, OME-TIFF, plain resolution tags: written by tifffile itself.
- FEI / Thermo Fisher: tag 34682 (FEI_HELIOS), INI text with CRLF lines
  (`[Scan] PixelWidth=...` in metres), as Helios/Quanta/Apreo software writes.
- Zeiss SEM: tag 34118 (CZ_SEM), SmartSEM's text: unnamed numbers first, then
  `AP_...` names, each followed by `Label = value unit` (µ as latin-1 0xB5).
- Olympus SIS: tag 33560, the binary `SIS0` block with a general-data entry
  (length exponent, x and y calibration) at an absolute file offset.
- TVIPS: tag 37706, the TemData header v1 + v2 records laid out by tifffile's
  own `TIFF.TVIPS_HEADER_V1/V2` (PixelSizeX/Y in nm).
- Gatan DM3/DM4: no library writes DM files, and neither rosettasciio nor
  ncempy ships sample files, so `write_dm` writes the tag tree itself, from
  the published format (big-endian tag headers, `%%%%` data tags with info
  arrays, little-endian values; DM4's 8-byte lengths and tag sizes): an
  ImageList with an RGBA thumbnail and the image, whose ImageData holds
  Calibrations/Dimension (Origin, Scale, Units), Data, DataType and
  Dimensions, as DigitalMicrograph stores them.
- MRC: mrcfile writes it; `voxel_size` is in Å.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import tifffile


def imagej(path: Path, image: np.ndarray, x: float, y: float | None = None, unit: str = "nm") -> Path:
    """ImageJ TIFF with pixels `x` by `y` in `unit` (resolution = pixels per unit). ImageJ writes µ as the
    escape `\\u00B5`; a unit with the character itself is written as other programs do, UTF-8 in the description."""
    y = x if y is None else y
    if unit.isascii():
        tifffile.imwrite(path, image, imagej=True, resolution=(1 / x, 1 / y), metadata={"unit": unit})
    else:
        description = f"ImageJ=1.54f\nimages=1\nunit={unit}\n".encode("utf-8")
        tifffile.imwrite(path, image, description=description, resolution=(1 / x, 1 / y), metadata=None)
    return path


def ome(path: Path, image: np.ndarray, x: float, x_unit: str, y: float, y_unit: str) -> Path:
    tifffile.imwrite(path, image, ome=True, metadata={"PhysicalSizeX": x, "PhysicalSizeXUnit": x_unit,
                                                      "PhysicalSizeY": y, "PhysicalSizeYUnit": y_unit})
    return path


def plain(path: Path, image: np.ndarray, px_per_unit: float | None = None, unit: str = "CENTIMETER") -> Path:
    """Plain TIFF, with resolution tags when `px_per_unit` is given (72 dpi in cm: what image editors write)."""
    if px_per_unit is None:
        tifffile.imwrite(path, image)
    else:
        tifffile.imwrite(path, image, resolution=(px_per_unit, px_per_unit), resolutionunit=unit)
    return path


def fei(path: Path, image: np.ndarray, width_m: float, height_m: float) -> Path:
    h, w = image.shape[:2]
    lines = [
        "[User]", "Date=11/13/2025", "Time=11:56:54 AM", "User=user", "UserText=", "",
        "[System]", "Type=DualBeam", "Software=7.6.0.3017", "Source=FEG", "Column=Elstar", "SystemType=Helios NanoLab",
        "DisplayWidth=0.1", "DisplayHeight=0.1", "",
        "[Beam]", "HV=2000", "Spot=", "ImageMode=Normal", "Beam=EBeam", "Scan=EScan", "",
        "[EBeam]", "Source=FEG", f"HFW={width_m * w:g}", f"VFW={height_m * h:g}", "WD=0.00401", "",
        "[Scan]", "InternalScan=true", "Dwelltime=3e-006", f"PixelWidth={width_m:g}", f"PixelHeight={height_m:g}",
        f"HorFieldsize={width_m * w:g}", f"VerFieldsize={height_m * h:g}", "Average=0", "Integrate=8", "",
        "[EScan]", "Scan=EScan", "InternalScan=true", f"PixelWidth={width_m:g}", f"PixelHeight={height_m:g}", "",
        "[Image]", "DigitalContrast=1", "DigitalBrightness=0", f"ResolutionX={w}", f"ResolutionY={h}", "",
    ]
    text = "\r\n".join(lines) + "\r\n"
    tifffile.imwrite(path, image, extratags=[(34682, "s", 0, text, True)])
    return path


def zeiss_sem(path: Path, image: np.ndarray, value: float, unit: str = "nm") -> Path:
    nm = value * {"nm": 1.0, "µm": 1e3, "pm": 1e-3}[unit]
    w = image.shape[1]
    unnamed = ["0", "0", "0", f"{nm * 1e-9 * w / 1024:.6e}", "0", "1", "0"]  # SmartSEM's leading numbers (SI units)
    named = [
        ("DP_DETECTOR_CHANNEL", "Signal A = InLens"),
        ("AP_WD", "WD = 4.0 mm"),
        ("AP_MAG", "Mag = 25.00 K X"),
        ("AP_IMAGE_PIXEL_SIZE", f"Image Pixel Size = {value:g} {unit}"),
        ("AP_PIXEL_SIZE", f"Pixel Size = {value:g} {unit}"),
        ("DP_SCANRATE", "Scan Speed = 7"),
        ("AP_ACTUALKV", "EHT = 3.00 kV"),
    ]
    text = "\r\n".join(unnamed + [line for pair in named for line in pair]) + "\r\n"
    tifffile.imwrite(path, image, extratags=[(34118, "s", 0, text.encode("latin-1") + b"\x00", True)])
    return path


def sis(path: Path, image: np.ndarray, x_m: float, y_m: float, exponent: int = -9) -> Path:
    """Olympus SIS: the `SIS0` block, one general-data entry whose struct sits at an absolute file offset."""
    header = struct.pack("<4s6xhhhhh6x32sH", b"SIS0", 30, 12, 13, 10, 125, b"frame".ljust(32, b"\x00"), 1)
    general = struct.pack("<10xhdd8xd2x34s32s", exponent, x_m / 10.0**exponent, y_m / 10.0**exponent, 25000.0,
                          b"Veleta".ljust(34, b"\x00"), b"TEM".ljust(32, b"\x00"))
    placeholder = header + struct.pack("<hhI", 1, 1, 0) + general
    tifffile.imwrite(path, image, extratags=[(33560, "B", len(placeholder), placeholder, True)])
    with tifffile.TiffFile(path) as tif:
        start = tif.pages[0].tags[33560].valueoffset
    with open(path, "r+b") as f:  # the entry's offset field: where `general` landed in the file
        f.seek(start + len(header) + 4)
        f.write(struct.pack("<I", start + len(header) + 8))
    return path


def tvips(path: Path, image: np.ndarray, x_nm: float, y_nm: float) -> Path:
    v1 = np.zeros((), np.dtype(tifffile.TIFF.TVIPS_HEADER_V1).newbyteorder("<"))
    v1["Version"], v1["HighTension"], v1["Magnification"] = 2, 120000, 25000
    v2 = np.zeros((), np.dtype(tifffile.TIFF.TVIPS_HEADER_V2).newbyteorder("<"))
    v2["ImageName"] = np.frombuffer("frame".encode("utf-16-le").ljust(160, b"\x00"), "V160")[0]
    v2["ImageSizeX"], v2["ImageSizeY"], v2["ImageSizeZ"] = image.shape[1], image.shape[0], 1
    v2["PixelSizeX"], v2["PixelSizeY"] = x_nm, y_nm
    v2["TemMagnification"], v2["Magic"] = 25000.0, 0xAAAAAAAA
    blob = v1.tobytes() + v2.tobytes()
    tifffile.imwrite(path, image, extratags=[(37706, "B", len(blob), blob, True)])
    return path


def mrc(path: Path, stack: np.ndarray, x_a: float, y_a: float | None = None) -> Path:
    import mrcfile

    with mrcfile.new(path, data=stack, overwrite=True) as m:
        m.voxel_size = (x_a, x_a if y_a is None else y_a, x_a)
    return path


# --- Gatan DigitalMicrograph ---------------------------------------------------------------------------------

_DM_TYPES = {np.dtype("int16"): (2, 1), np.dtype("float32"): (6, 2), np.dtype("uint8"): (10, 6),
             np.dtype("int32"): (3, 7), np.dtype("uint16"): (4, 10), np.dtype("uint32"): (5, 11)}  # -> (tag type, DataType)


class _DMWriter:
    """DM3/DM4 tag tree: big-endian headers and info arrays, little-endian values."""

    def __init__(self, version: int):
        self.v = version
        self.n = ">q" if version == 4 else ">l"  # lengths, counts and info entries

    def _num(self, value: int) -> bytes:
        return struct.pack(self.n, value)

    def _entry(self, kind: int, name: str, body: bytes) -> bytes:
        raw = name.encode("latin-1")
        head = struct.pack(">bh", kind, len(raw)) + raw
        return head + (struct.pack(">q", len(body)) if self.v == 4 else b"") + body

    def group(self, name: str, tags: list[bytes]) -> bytes:
        return self._entry(20, name, struct.pack(">bb", 0, 0) + self._num(len(tags)) + b"".join(tags))

    def data(self, name: str, info: list[int], payload: bytes) -> bytes:
        body = b"%%%%" + self._num(len(info)) + b"".join(self._num(i) for i in info) + payload
        return self._entry(21, name, body)

    def long(self, name: str, value: int) -> bytes:
        return self.data(name, [3], struct.pack("<l", value))

    def float(self, name: str, value: float) -> bytes:
        return self.data(name, [6], struct.pack("<f", value))

    def boolean(self, name: str, value: bool) -> bytes:
        return self.data(name, [8], struct.pack("<B", int(value)))

    def text(self, name: str, value: str) -> bytes:  # DM keeps strings as arrays of 2-byte characters
        return self.data(name, [20, 4, len(value)], value.encode("utf-16-le"))

    def array(self, name: str, values: np.ndarray, tag_type: int) -> bytes:
        flat = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"))
        return self.data(name, [20, tag_type, flat.size], flat.tobytes())

    def image(self, array: np.ndarray, scale: tuple[float, float], units: str, name: str) -> bytes:
        """One ImageList entry; `scale` is (x, y) per pixel in `units`, DM's order of dimensions is x, y."""
        h, w = array.shape[:2]
        if array.ndim == 3:  # RGBA thumbnail: DataType 23, 4 bytes a pixel
            tag_type, data_type, depth, data = 5, 23, 4, array.view(np.uint32).reshape(h, w)
        else:
            (tag_type, data_type), depth, data = _DM_TYPES[array.dtype], array.dtype.itemsize, array
        dims = [self.group("", [self.float("Origin", 0.0), self.float("Scale", s), self.text("Units", units)])
                for s in scale]
        calibrations = self.group("Calibrations", [
            self.group("Brightness", [self.float("Origin", 0.0), self.float("Scale", 1.0), self.text("Units", "")]),
            self.group("Dimension", dims), self.boolean("DisplayCalibratedUnits", True)])
        image_data = self.group("ImageData", [
            calibrations, self.array("Data", data, tag_type), self.long("DataType", data_type),
            self.group("Dimensions", [self.long("", w), self.long("", h)]), self.long("PixelDepth", depth)])
        tags = self.group("ImageTags", [self.group("Microscope Info", [self.text("Microscope", "TEM"),
                                                                       self.float("Indicated Magnification", 25000.0)])])
        return self.group("", [image_data, tags, self.text("Name", name),
                               self.group("UniqueID", [self.long("", 1), self.long("", 2), self.long("", 3), self.long("", 4)])])

    def file(self, root: list[bytes]) -> bytes:
        body = struct.pack(">bb", 1, 0) + self._num(len(root)) + b"".join(root) + b"\x00" * 8
        size = struct.pack(">Q", len(body)) if self.v == 4 else struct.pack(">L", len(body))
        return struct.pack(">l", self.v) + size + struct.pack(">l", 1) + body


def dm(path: Path, image: np.ndarray, scale: tuple[float, float], units: str, version: int = 3) -> Path:
    """A DM3/DM4 file as DigitalMicrograph saves an image: a thumbnail first (listed in Thumbnails), then the image."""
    w = _DMWriter(version)
    thumb = np.zeros((8, 8, 4), np.uint8)
    thumb[..., 3] = 255
    image_list = w.group("ImageList", [w.image(thumb, (1.0, 1.0), "", ""), w.image(image, scale, units, Path(path).stem)])
    thumbnails = w.group("Thumbnails", [w.group("", [w.long("ImageIndex", 0)])])
    root = [w.group("DocumentObjectList", []), image_list, w.group("ImageSourceList", []), thumbnails]
    Path(path).write_bytes(w.file(root))
    return path
