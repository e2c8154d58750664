"""A frame folder is read in the order of the numbers in its names (issue 32 item 10: it was string order,
frame_1, frame_10, frame_11, ..., frame_2), through the project's one lister."""

import torch

from transferlab import images
from transferlab.video import io


def test_frame_folder_is_read_in_natural_order(tmp_path):
    for i in (1, 2, 10, 11):
        images.save_image(torch.full((3, 16, 16), i / 20), tmp_path / f"frame_{i}.png")
    levels = [round(float(frame.mean()) * 20) for frame in io.read_frames(tmp_path)]
    assert levels == [1, 2, 10, 11]
    assert io.probe(tmp_path).frames == 4
