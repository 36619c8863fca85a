"""Output names: the key's stem, unique in an output folder, kept across runs."""
from __future__ import annotations

from mitotally.runtime.names import OutputNames, stem_name
from mitotally.runtime.results import ImageResult
from mitotally.runtime.writers.tables import write_record


def test_stem_name_drops_only_an_image_extension():
    assert stem_name("frame_0.tif") == "frame_0" and stem_name("sub/frame 01.PNG") == "sub/frame 01"
    assert stem_name("x.ome.tif") == "x.ome" and stem_name("notes.txt") == "notes.txt" and stem_name(".tif") == ".tif"


def test_inputs_sharing_a_stem_keep_their_extension():
    names = OutputNames().assign(["a.png", "A.tif", "b.tif", "sub/a.tif", "x.z0001.tif"])
    # a.png / A.tif: one name on macOS and Windows; x.z0001 would be a stack plane's overlay name
    assert names == {"a.png": "a.png", "A.tif": "A.tif", "b.tif": "b", "sub/a.tif": "sub/a", "x.z0001.tif": "x.z0001.tif"}


def test_a_stem_equal_to_another_inputs_name_is_not_reused():
    assert OutputNames().assign(["a.png", "a.tif", "a.tif.png"]) == {"a.png": "a.png", "a.tif": "a.tif", "a.tif.png": "a.tif.png"}
    assert OutputNames({"k.tif": "a", "m.tif": "a.png"}).assign(["a.png"]) == {"a.png": "a.png~2"}


def test_recorded_names_are_kept_and_held(tmp_path):
    write_record(tmp_path, ImageResult("a.tif", "/in/a.tif", name="a"))
    legacy = ImageResult("b.tif", "/in/b.tif").to_record()  # a record from before names: outputs by key
    legacy.pop("name")
    assert ImageResult.from_record(legacy).name == "b.tif"
    book = OutputNames.of_folder(tmp_path)
    assert book.assign(["a.tif", "a.png", "c.tif"]) == {"a.tif": "a", "a.png": "a.png", "c.tif": "c"}
    assert book.assign(["c.png"]) == {"c.png": "c.png"}  # c is now held by c.tif (a watcher's next file)
