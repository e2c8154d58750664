import torch

from transferlab.losses import content_loss, gram_matrix, style_loss, total_variation


def test_gram_matrix_is_channel_outer_product_mean_over_positions():
    f = torch.randn(2, 5, 6, 7)
    expected = torch.einsum("bchw,bdhw->bcd", f, f) / (6 * 7)
    torch.testing.assert_close(gram_matrix(f), expected)


def test_gram_matrix_does_not_grow_with_image_size():
    texture = torch.rand(1, 4, 8, 8)
    tiled = texture.repeat(1, 1, 3, 3)
    torch.testing.assert_close(gram_matrix(tiled), gram_matrix(texture))


def test_gram_matrix_stays_fp32_under_autocast():
    f = torch.randn(1, 8, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gram_matrix(f.bfloat16()).dtype == torch.float32


def test_style_loss_is_mean_squared_gram_difference():
    f, g = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    target = gram_matrix(g)
    assert style_loss(g, target) == 0
    torch.testing.assert_close(style_loss(f, target), ((gram_matrix(f) - target) ** 2).mean())


def test_content_loss_and_total_variation():
    x = torch.rand(1, 3, 8, 8)
    assert content_loss(x, x) == 0
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)) == 0
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., ::2] = 1  # every horizontal neighbour differs by 1, vertical ones are equal
    torch.testing.assert_close(total_variation(stripes), torch.tensor(1.0))
