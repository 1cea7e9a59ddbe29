"""The results report: every report number beside ours from fabricated metrics files, "—" for
missing ones, figures copied, and the command line."""

import json

import pytest

from helpers import paths, report

PROTOCOL32 = {"split": "80/20 by emoji identity", "n_train": 800, "n_val": 200, "image_size": 32, "seed": 0}
PROTOCOL64 = {**PROTOCOL32, "image_size": 64}
METRICS = {
    "vqvae": {"train_psnr": 31.5, "val_psnr": 30.1, "train_ssim": 0.97, "val_ssim": 0.961, "val_mse": 0.001,
              "val_code_usage": 0.98, "val_perplexity": 400.0, "protocol": PROTOCOL32},
    "prior_vqvae": {"fid_floor": 30.0, "fid_recon": 50.0,
                    "real_val": {"precision": 0.72, "density": 0.95, "judge_accuracy": 0.41,
                                 "judge_top_probability": 0.52},
                    "blobs": {"judge_accuracy": 0.11, "judge_top_probability": 0.2},
                    "pixelcnn": {"fid": 150.0, "n_samples": 2000, "recognisable_share": 0.97, "real_val_accuracy": 0.8,
                                 "subcategory_share": "not measured: drawn for categories, not sub-categories",
                                 "sureness": 0.25, "precision": 0.61, "density": 0.5},
                    "gated_pixelcnn": {"fid": 140.0},
                    "protocol": {**PROTOCOL32, "n_samples": 2000, "reference": "train images"}},
    "vqvae2": {"train_psnr": 25.0, "val_psnr": 24.0, "train_ssim": 0.9, "val_ssim": 0.88,
               "val_code_usage_top": 0.95, "val_code_usage_bottom": 0.9, "protocol": PROTOCOL64},
    "prior_vqvae2": {"fid_floor": 31.0, "fid_recon": 60.0, "pixelsnail": {"fid": 300.0}, "pixelcnn": {"fid": 420.0},
                     "protocol": {**PROTOCOL64, "n_samples": 2000}},
    "extensions": {"inpainting": {"autoencoder": {"val_psnr": 24.0, "val_ssim": 0.9, "train_psnr": 24.5,
                                                  "val_psnr_masked": 12.0},
                                  "prior": {"val_psnr": 26.0, "val_ssim": 0.93, "val_psnr_masked": 15.0}},
                   "superres": {"decoder": {"val_psnr": 28.5, "val_ssim": 0.95},
                                "bicubic": {"val_psnr": 26.0, "val_ssim": 0.92},
                                "lanczos": {"val_psnr": 26.2, "val_ssim": 0.925}},
                   "protocol": {"split": "80/20 by emoji identity", "inpainting": {**PROTOCOL32, "mask": "8x8"},
                                "superres": {"n_val": 150, "image_size": 128}}},
    "analysis": {"memorized_share": 0.42, "k": 7, "silhouette": 0.21, "protocol": {"n_samples": 2000}},
    "timing": {"00_data": 60.0, "01_vqvae": 1200.0, "total": 5400.0},
}


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    metrics_dir = paths.metrics_path("smoke", "x").parent
    metrics_dir.mkdir(parents=True)
    return metrics_dir


def _write(metrics_dir, stages):
    for stage in stages:
        (metrics_dir / f"{stage}.json").write_text(json.dumps(METRICS[stage]))


def _write_random(artifacts, values):
    """The random-split run's vqvae.json (``smoke-random``), beside ``artifacts`` (smoke's)."""
    protocol = {**PROTOCOL32, "split": "random 80/20 of images (the report's protocol)", "profile": "smoke-random"}
    random_dir = paths.metrics_path("smoke-random", "vqvae").parent
    random_dir.mkdir(parents=True, exist_ok=True)
    (random_dir / "vqvae.json").write_text(json.dumps({**values, "protocol": protocol}))


def _cell(df, model, metric, column="ours"):
    hit = df[(df.model == model) & (df.metric == metric)]
    assert len(hit) == 1, (model, metric)
    return hit.iloc[0][column]


def test_every_report_number_sits_beside_ours(artifacts, capsys):
    _write(artifacts, METRICS)
    _write_random(artifacts, {"val_psnr": 27.0, "val_ssim": 0.93})
    df = report.results_table("smoke")
    assert "note:" not in capsys.readouterr().out             # nothing missing
    expected = {("VQ-VAE 32x32", "val PSNR (dB)"): ("29.24", "30.10", "yes"),
                ("VQ-VAE 32x32", "val SSIM"): ("0.954", "0.961", "yes"),
                ("VQ-VAE 32x32", "codebook usage (val)"): ("30-70 %", "98.00 %", "yes"),
                ("PixelCNN prior (VQ-VAE)", "PixelCNN FID"): ("176.0", "150.0 (5.00x floor)", "yes"),
                ("VQ-VAE-2 64x64", "val PSNR (dB)"): ("22.83", "24.00", "yes"),
                ("VQ-VAE-2 64x64", "val SSIM"): ("0.897", "0.880", "no"),
                ("VQ-VAE-2 64x64", "top codebook usage (val)"): ("38.67 %", "95.00 %", "yes"),
                ("VQ-VAE-2 64x64", "bottom codebook usage (val)"): ("56.64 %", "90.00 %", "yes"),
                ("VQ-VAE-2 priors", "PixelSNAIL FID"): ("341.0", "300.0 (9.68x floor)", "yes"),
                ("VQ-VAE-2 priors", "PixelCNN FID"): ("416.0", "420.0 (13.55x floor)", "no"),   # lower is better
                ("Inpainting 32x32, 8x8 mask", "autoencoder val PSNR (dB)"): ("25.32", "24.00", "no"),
                ("Inpainting 32x32, 8x8 mask", "prior val PSNR (dB)"): ("25.32", "26.00", "yes"),
                ("Inpainting 32x32, 8x8 mask", "prior val SSIM"): ("0.911", "0.930", "yes"),
                ("Super-resolution 64->128", "decoder val PSNR (dB)"): ("23.65", "28.50", "yes"),
                ("Super-resolution 64->128", "decoder val SSIM"): ("0.797", "0.950", "yes")}
    for (model, metric), (rep, ours, better) in expected.items():
        assert (_cell(df, model, metric, "report"), _cell(df, model, metric), _cell(df, model, metric, "better")) \
            == (rep, ours, better), (model, metric)
    assert _cell(df, "VQ-VAE 32x32", "train PSNR (dB)") == "31.50"              # train beside val
    assert _cell(df, "VQ-VAE 32x32", "train PSNR (dB)", "report") == "—"
    assert _cell(df, "Super-resolution 64->128", "bicubic val PSNR (dB)") == "26.00"
    assert _cell(df, "Analysis", "k-means clusters of the codebook (by silhouette)") == "7"
    assert _cell(df, "Whole chain", "minutes, all notebooks run (timing.json total)") == "90.0"
    # protocol: image size, split and count, N samples; sub-protocols for the extensions
    assert _cell(df, "VQ-VAE 32x32", "val PSNR (dB)", "measured on") == "32 px, 200 val"
    assert _cell(df, "VQ-VAE 32x32", "train SSIM", "measured on") == "32 px, 800 train"
    assert _cell(df, "PixelCNN prior (VQ-VAE)", "PixelCNN FID", "measured on") == "32 px, N = 2000 vs 800 train"
    assert _cell(df, "Super-resolution 64->128", "decoder val SSIM", "measured on") == "128 px, 150 val"
    # an FID beside its file's floor; the floor itself and other measures without the ratio
    assert _cell(df, "PixelCNN prior (VQ-VAE)", "FID of VQ-VAE val reconstructions") == "50.0 (1.67x floor)"
    assert _cell(df, "PixelCNN prior (VQ-VAE)", "FID floor (val images)") == "30.0"


def test_the_reports_split_has_its_own_rows_read_from_the_random_split_run(artifacts, capsys):
    _write(artifacts, ["vqvae"])
    label = "VQ-VAE 32x32, the report's random split"
    df = report.results_table("smoke")
    assert _cell(df, label, "val PSNR (dB)") == "—"
    assert "smoke-random/metrics/vqvae.json is missing (written by 01_vqvae of profile smoke-random)" \
        in capsys.readouterr().out
    _write_random(artifacts, {"val_psnr": 29.5, "val_ssim": 0.95})
    df = report.results_table("smoke")
    assert (_cell(df, label, "val PSNR (dB)"), _cell(df, label, "val PSNR (dB)", "better")) == ("29.50", "yes")
    assert (_cell(df, label, "val SSIM", "report"), _cell(df, label, "val SSIM")) == ("0.954", "0.950")
    assert _cell(df, "VQ-VAE 32x32", "val PSNR (dB)") == "30.10"       # our split's row reads our run
    text = report.write_results("smoke", artifacts.parent / "docs").read_text()
    assert "| vqvae.json | random 80/20 of images (the report's protocol); 800 train" in text


def test_missing_files_give_dashes_and_notes_not_a_crash(artifacts, tmp_path, capsys):
    _write(artifacts, ["vqvae", "prior_vqvae"])
    (artifacts / "analysis.json").write_text("{ not json")
    out_dir = tmp_path / "docs"
    path = report.write_results("smoke", out_dir)
    printed = capsys.readouterr().out
    for stage in ("vqvae2", "prior_vqvae2", "extensions", "timing"):
        assert f"{stage}.json is missing" in printed
    assert "analysis.json is not valid JSON" in printed
    text = path.read_text()
    assert "| VQ-VAE 32x32 | val PSNR (dB) | 29.24 | 30.10 | yes | 32 px, 200 val |" in text
    assert "| VQ-VAE-2 priors | PixelSNAIL FID | 341.0 | — | — | — |" in text
    assert "PSNR 29.24 dB, SSIM 0.954" in text                 # the corrected reading is stated
    assert "## Not yet measured" in text and "extensions.json is missing" in text


def test_figures_are_copied_and_linked_and_the_cli_writes_the_file(artifacts, tmp_path):
    _write(artifacts, METRICS)
    figures = paths.figures_dir("smoke")
    figures.mkdir(parents=True)
    (figures / "inpainting_val.png").write_bytes(b"\x89PNG fake")
    out_dir = tmp_path / "docs"
    assert report.main(["--profile", "smoke", "--out", str(out_dir)]) == 0
    assert (out_dir / "inpainting_val.png").read_bytes() == b"\x89PNG fake"
    text = (out_dir / "RESULTS.md").read_text()
    assert "![inpainting val](inpainting_val.png)" in text
    assert "inpainting: 80/20 by emoji identity; 800 train / 200 val images; 32x32 px; mask: 8x8" in text


def test_a_subset_evaluation_is_named_in_the_protocol_and_the_row(artifacts):
    subset = {**METRICS["vqvae"], "protocol": {**PROTOCOL32, "n_eval": {"train": 50, "val": 40}}}
    (artifacts / "vqvae.json").write_text(json.dumps(subset))
    df = report.results_table("smoke")
    assert _cell(df, "VQ-VAE 32x32", "val PSNR (dB)", "measured on") == "32 px, 40 val"
    assert _cell(df, "VQ-VAE 32x32", "train PSNR (dB)", "measured on") == "32 px, 50 train"
    text = report.protocol_text(subset)
    assert "evaluated on 50 train / 40 val" in text and "n_eval" not in text
    whole = {**PROTOCOL32, "n_eval": {"train": 800, "val": 200}}    # every image: nothing to add
    assert report.protocol_text({"protocol": whole}) == report.protocol_text({"protocol": PROTOCOL32})


def test_an_fid_row_names_the_reference_it_was_measured_against(artifacts):
    prior = {**METRICS["prior_vqvae"],
             "protocol": {**PROTOCOL32, "n_samples": 2000, "reference": "train images", "n_reference": 300,
                          "n_val_reference": 200}}
    (artifacts / "prior_vqvae.json").write_text(json.dumps(prior))
    df = report.results_table("smoke")
    assert _cell(df, "PixelCNN prior (VQ-VAE)", "FID floor (val images)", "measured on") == "32 px, 200 val vs 300 train"
    assert _cell(df, "PixelCNN prior (VQ-VAE)", "PixelCNN FID", "measured on") == "32 px, N = 2000 vs 300 train"
    assert "N = 2000 samples vs 300 train images" in report.protocol_text(prior)


def test_the_results_say_which_machine_and_commit_each_metrics_file_came_from(artifacts, tmp_path):
    machine = {"cpu": "x86_64", "cpu_capability": "AVX2", "fast_bf16": False, "threads": 2,
               "torch": "2.14.1", "commit": "abc1234"}
    recorded = {**METRICS["vqvae"], "protocol": {**PROTOCOL32, "machine": machine}}
    text = report.machine_text(recorded)
    assert text == "x86_64 AVX2, fp32 training (no fast bf16), 2 threads, torch 2.14.1, commit abc1234"
    assert "machine" not in report.protocol_text(recorded)        # not mistaken for a sub-protocol
    assert report.machine_text({**METRICS["vqvae"], "protocol": {**PROTOCOL32, "machine": {
        **machine, "cpu_capability": "AVX512", "fast_bf16": True}}}).startswith("x86_64 AVX512, bf16 training,")
    assert report.machine_text(METRICS["vqvae"]) == "not recorded"   # metrics files from before it was kept
    named = {**METRICS["vqvae"],
             "protocol": {**PROTOCOL32, "machine": {**machine, "cpu_model": "AMD EPYC, family 26 model 2"}}}
    assert report.machine_text(named).startswith("AMD EPYC, family 26 model 2 (x86_64 AVX2), fp32 training")

    _write(artifacts, ["prior_vqvae"])
    (artifacts / "vqvae.json").write_text(json.dumps(recorded))
    text = report.write_results("smoke", tmp_path / "docs").read_text()
    assert "| metrics file | protocol | ran on |" in text
    assert "| vqvae.json |" in text and "commit abc1234 |" in text
    assert "| prior_vqvae.json |" in text and "| not recorded |" in text


def test_the_readme_names_each_machine_once_with_the_commits_that_ran_on_it():
    machine = {"cpu": "x86_64", "cpu_capability": "AVX2", "fast_bf16": False, "threads": 2, "torch": "2.14.1"}
    ran = lambda **m: {"protocol": {"machine": {**machine, **m}}}   # noqa: E731
    files = [ran(commit="bbb"), ran(commit="aaa"), ran(commit="bbb"), ran(commit="ccc", threads=1), {}]
    assert report.machines_text(files) == (
        "not recorded; x86_64 AVX2, fp32 training (no fast bf16), 1 thread, torch 2.14.1, commit ccc; "
        "x86_64 AVX2, fp32 training (no fast bf16), 2 threads, torch 2.14.1, commits aaa, bbb")
    assert report.machines_text([]) == report.DASH


def test_a_time_capped_run_is_marked_beside_its_figures(artifacts):
    _write(artifacts, METRICS)
    capped = {**METRICS["prior_vqvae"], "pixelcnn": {"fid": 150.0, "time_capped": True}}
    (artifacts / "prior_vqvae.json").write_text(json.dumps(capped))
    (artifacts / "vqvae.json").write_text(json.dumps({**METRICS["vqvae"], "time_capped": False}))
    df = report.results_table("smoke")
    assert _cell(df, "PixelCNN prior (VQ-VAE)", "PixelCNN FID") == "150.0 (time-capped) (5.00x floor)"
    assert _cell(df, "PixelCNN prior (VQ-VAE)", "gated PixelCNN FID") == "140.0 (4.67x floor)"   # not capped
    assert _cell(df, "VQ-VAE 32x32", "val PSNR (dB)") == "30.10"


def test_the_readme_table_is_rewritten_between_its_markers_and_nothing_else(artifacts, tmp_path):
    _write(artifacts, ["vqvae", "prior_vqvae"])
    begin, end = report.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n{begin}\nan old table\n{end}\n\n## after\ntext\n")
    report.write_readme_table("smoke", readme)
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n" + begin) and text.endswith(end + "\n\n## after\ntext\n")
    assert "an old table" not in text
    inside = text.split(begin)[1].split(end)[0]
    assert "| 30.10 |" in inside or "30.1" in inside                  # our VQ-VAE val PSNR
    assert "29.24" in inside and "FID floor" in inside                 # the report's number, the floor
    assert "train PSNR" not in inside                                  # the whole table stays in RESULTS.md
    assert "not yet measured: " in inside and "Profile `smoke`" in inside
    report.write_readme_table("smoke", readme)                         # again: the same file
    assert readme.read_text() == text


def test_a_readme_without_its_markers_is_refused_untouched(artifacts, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="results table: begin"):
        report.write_readme_table("smoke", readme)
    assert readme.read_text() == "# no markers\n"


def test_the_readme_has_the_markers_its_table_is_written_between():
    text = (paths.PROJECT_ROOT / "README.md").read_text()
    begin, end = report.README_MARKERS
    assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end)


def test_each_prior_is_judged_beside_its_fid_and_the_gan_test_is_labelled_passable_by_colour(artifacts, tmp_path):
    prior = {**METRICS["prior_vqvae"],
             "protocol": {**PROTOCOL32, "n_samples": 2000, "n_reference": 300, "n_val_reference": 200}}
    (artifacts / "prior_vqvae.json").write_text(json.dumps(prior))
    df = report.results_table("smoke")
    model = "PixelCNN prior (VQ-VAE)"
    assert _cell(df, model, "PixelCNN category GAN-test share (passable by colour)") == "0.97"
    assert _cell(df, model, "PixelCNN sub-category share (hue-free judge)") == \
        "not measured: drawn for categories, not sub-categories"
    assert _cell(df, model, "PixelCNN sureness (hue-free judge)") == "0.25"
    assert (_cell(df, model, "PixelCNN precision"), _cell(df, model, "PixelCNN density")) == ("0.61", "0.5")
    assert _cell(df, model, "gated PixelCNN sureness (hue-free judge)") == "—"       # not in the file
    assert _cell(df, model, "precision of real val images (floor)") == "0.72"
    assert _cell(df, model, "density of real val images (floor)") == "0.95"
    assert _cell(df, model, "hue-free judge: sub-category accuracy on real val images (share 1)") == "41.00 %"
    assert _cell(df, model, "hue-free judge: sub-category accuracy on blurred val images, blobs (share 0)") \
        == "11.00 %"
    assert _cell(df, model, "category GAN-test classifier accuracy on real val images (passable by colour)") \
        == "80.00 %"
    assert not any("recognisable share" in m for m in df.metric)                     # renamed, not doubled
    # what each was measured on: samples against the val references, or against train
    assert _cell(df, model, "PixelCNN sureness (hue-free judge)", "measured on") == \
        "32 px, N = 2000 samples, references on 200 val"
    assert _cell(df, model, "PixelCNN density", "measured on") == "32 px, N = 2000 vs 300 train"
    assert _cell(df, model, "density of real val images (floor)", "measured on") == "32 px, 200 val vs 300 train"
    assert _cell(df, model, "hue-free judge: mean top probability on blobs (sureness 0)", "measured on") == \
        "32 px, 200 val"
    rows, _, _ = report.results_rows("smoke")
    shown = {r["metric"] for r in report.headline_rows(rows)}
    assert {"PixelCNN sub-category share (hue-free judge)", "PixelCNN sureness (hue-free judge)",
            "PixelCNN category GAN-test share (passable by colour)"} <= shown
    assert not any(m.startswith("hue-free judge:") for m in shown)                   # references: RESULTS.md
    assert not {"PixelCNN precision", "PixelCNN density", "PixelCNN recall", "PixelCNN coverage"} & shown
    unmeasured = {(r["model"], r["metric"]) for r in rows if r["ours"] is None}
    assert unmeasured and not unmeasured & {(r["model"], r["metric"]) for r in report.headline_rows(rows)}
    text = report.write_results("smoke", tmp_path / "docs").read_text()
    assert "passable by colour" in text and "**Sureness**" in text


def test_a_superres_not_measured_reads_its_reason_in_every_superres_row(artifacts):
    extensions = {**METRICS["extensions"], "superres": {"not_measured": "no 128 px images"}}
    (artifacts / "extensions.json").write_text(json.dumps(extensions))
    df = report.results_table("smoke")
    model = "Super-resolution 64->128"
    for metric in ("decoder val PSNR (dB)", "decoder val SSIM", "bicubic val PSNR (dB)", "Lanczos val SSIM"):
        assert _cell(df, model, metric) == "not measured: no 128 px images"
    assert _cell(df, model, "decoder val PSNR (dB)", "better") == "—"       # no comparison with a reason
    assert _cell(df, "Inpainting 32x32, 8x8 mask", "autoencoder val PSNR (dB)") == "24.00"   # the rest read on
