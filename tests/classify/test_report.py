"""The confusion-matrix image at 2 to 100 classes, and misclassified examples by confusion frequency."""

from __future__ import annotations

import torch

from transferlab.classify import report


def test_confusion_image_names_classes_and_stays_readable_up_to_100_classes(tmp_path) -> None:
    two = report.confusion_image(torch.tensor([[56, 14], [70, 13]]), ["ants", "bees"])
    assert two.width < 600 and two.height < 300
    for n in (20, 100):
        counts = torch.randint(0, 50, (n, n))
        image = report.confusion_image(counts, [f"class{i:03d}" for i in range(n)])
        assert 25 * n <= image.width <= 40 * n + 400 and image.height <= 40 * n + 200
    two.save(tmp_path / "two.png")


def test_misclassified_sheet_shows_the_most_frequent_confusions_first() -> None:
    counts = torch.tensor([[5, 1, 9], [3, 5, 0], [0, 0, 5]])
    image = torch.rand(3, 8, 8)
    mistakes = [report.Mistake(image, t, p, 0.6) for t, p in [(0, 1), (1, 0), (0, 2), (0, 2)]]
    sheet = report.misclassified_sheet(mistakes, ["a", "b", "c"], counts, pairs=2)
    assert sheet is not None and sheet.width == 3 * 128  # (0, 2) twice, then (1, 0); (0, 1) is left out
    assert report.misclassified_sheet([], ["a"], counts) is None
    many = report.misclassified_sheet([report.Mistake(image, 0, 2, 0.6)] * 8, ["a", "b", "c"], counts)
    assert many is not None and many.width == 3 * 128  # 3 a row: near full size in TensorBoard's card


def test_a_thousand_classes_draw_the_most_confused_ones_and_write_every_one_as_data(tmp_path) -> None:
    """Issue 32 item 10: 1000 classes made a 27,500 px confusion image (a 9.6 GB copy) after the first epoch."""
    n = 1000
    counts = torch.diag(torch.full((n,), 5))
    counts[7, 300], counts[300, 7], counts[999, 0] = 4, 2, 3  # the confusions the image must show
    classes = [f"c{i}" for i in range(n)]
    image = report.confusion_image(counts, classes)
    assert image.width <= 40 * report.SHOWN_OF_MANY + 400 and image.height <= 40 * report.SHOWN_OF_MANY + 200
    report.write_confusion_csv(counts, classes, tmp_path / "confusion.csv")
    lines = (tmp_path / "confusion.csv").read_text().splitlines()
    assert len(lines) == n + 1 and lines[0].split(",")[1:3] == ["c0", "c1"]
    assert lines[1 + 7].split(",")[1 + 300] == "4"
