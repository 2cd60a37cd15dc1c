import pytest

from deband.errors import OutputError, OutputExistsError, SameFileError
from deband.io.folders import FolderReport, Job, gather, output_folder, plan


def _files(folder, *names):
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(name.encode())
    return [folder / n for n in names]


def test_gather_takes_files_and_folder_contents_and_names_what_it_leaves_out(tmp_path):
    _files(tmp_path / "in", "b.png", "a.JPG", "anim.gif", ".a.partial-1234.png")
    (tmp_path / "in" / "sub.png").mkdir()
    report = FolderReport()
    given = tmp_path / "notes.txt"  # a file given by name is taken whatever its suffix
    found = gather([tmp_path / "in", given], {".png", ".jpg"}, report)
    assert found == [tmp_path / "in" / "a.JPG", tmp_path / "in" / "b.png", given]
    assert report.left_out == [tmp_path / "in" / "anim.gif"]


def test_output_folder_is_never_an_input_folder_nor_a_file_name(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (tmp_path / "link").symlink_to(src)
    for same in (src, tmp_path / "link", tmp_path / "in" / ".." / "in"):
        with pytest.raises(SameFileError, match="the output folder is the input folder"):
            output_folder(same, [src])
    with pytest.raises(OutputError, match="a file name"):
        output_folder(tmp_path / "two.png", [src])
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(OutputError, match="is a file"):
        output_folder(tmp_path / "file", [src])
    assert output_folder(src / "out" / "deeper", [src]).is_dir()  # inside the input folder: fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "in", "link"]


def test_plan_skips_finished_jobs_and_refuses_partial_ones(tmp_path):
    a, b, c = _files(tmp_path / "in", "a.png", "b.png", "c.png")
    out = tmp_path / "out"
    _files(out, "a.png", "a-x.png", "b-x.png")
    jobs = [Job(src, (out / src.name, out / f"{src.stem}-x.png")) for src in (a, b, c)]
    report = FolderReport()
    assert plan(jobs, overwrite=False, skip_finished=True, report=report) == [jobs[2]]
    assert report.skipped == [(a, out / "a.png")]
    assert [(src, type(e), str(e)) for src, e in report.failed] == [
        (b, OutputExistsError, f"{out / 'b-x.png'}: already exists")]
    report = FolderReport()
    assert plan(jobs, overwrite=True, skip_finished=True, report=report) == jobs
    assert report == FolderReport()
    assert plan(jobs[:1], overwrite=False, skip_finished=False, report=report) == []  # not a folder mode
    assert [type(e) for _, e in report.failed] == [OutputExistsError] and report.skipped == []


def test_plan_never_writes_over_an_input_and_never_one_file_twice(tmp_path):
    a, b = _files(tmp_path, "a.png", "a-x.png")
    jobs = [Job(a, (tmp_path / "a.tif", tmp_path / "a-x.png")), Job(b, (tmp_path / "a-x.tif",))]
    report = FolderReport()
    assert plan(jobs, overwrite=True, skip_finished=True, report=report) == [jobs[1]]
    assert [(src, type(e)) for src, e in report.failed] == [(a, SameFileError)]  # its side output is b
    with pytest.raises(OutputError, match="would both be written to"):
        plan([Job(a, (tmp_path / "o.png",)), Job(b, (tmp_path / "." / "o.png",))], True, True, FolderReport())
