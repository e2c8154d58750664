import torch

from transferlab.fast.arbitrary.networks import AdaINNet


def test_alpha_zero_reconstructs_content_features():
    torch.manual_seed(0)
    net = AdaINNet().eval()
    c, s = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = net(c, s, alpha=0.0)
        torch.testing.assert_close(out, net.decoder(net.encode(c)["relu4_1"]))


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    for arch in ("adain", "sanet"):
        net = AdaINNet(arch=arch)
        c, s = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
        losses = []
        for _ in range(3):
            _, terms = net.terms(c, s)
            loss = terms["content"] + 10 * terms["style"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], (arch, losses)
