import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Sums exp(scale * x) over one dimension (elementwise then reduction).
    """
    def __init__(self, dim: int):
        super(Model, self).__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.sum(torch.exp(x * scale), dim=self.dim)


batch_size = 4
dim1 = 6
dim2 = 12
reduce_dim = 1


def get_inputs():
    x = torch.randn(batch_size, dim1, dim2)
    return [x, 0.5]


def get_init_inputs():
    return [reduce_dim]
