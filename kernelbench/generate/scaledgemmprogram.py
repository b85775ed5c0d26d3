"""A captured graph read as one product of scaled fp8 operands with an elementwise epilogue (the scaled_gemm
family's front end): the gemm family's reading (kernelbench.generate.gemmprogram) around the scaled_mm node that
kernelbench.generate.scaled_operands rewrote the reference's dequantize-then-matmul into.

The operands are the fp8 inputs and scale inputs themselves, seen through the node's proven index maps: host lines
view each fp8 input as the product's strided [M, K] / [K, N] matrix and each scale input as a flat vector read at
offset + (row // row block) * row stride + (column // column block) * column stride. A scale constant over K is
applied once to the fp32 accumulator before the epilogue; a scale with blocks along K is applied to each K step's
partial product, the K tile dividing every K block (so each step lies inside one block of each scale).
"""

from __future__ import annotations

import torch
import torch.fx

from kernelbench.generate.frontend import Unsupported, tensor_meta
from kernelbench.generate.gemmprogram import PRODUCTS, GemmLowering
from kernelbench.generate.graph import Capture
from kernelbench.generate.scaled_operands import SCALED_MM, k_group, rewrite_scaled_products


class ScaledGemmLowering(GemmLowering):
    def find_product(self) -> torch.fx.Node:
        products = [n for n in self.nodes if n.op == "call_function" and n.target is SCALED_MM]
        if len(products) != 1 or any(n.op == "call_function" and n.target in PRODUCTS for n in self.nodes):
            raise Unsupported(f"{len(products)} scaled fp8 products (the scaled_gemm family takes one product)")
        return products[0]

    def input_name(self, node: torch.fx.Node) -> str:
        if node.op != "placeholder" or node in self.scalars:
            raise Unsupported(f"{node.name} feeds the scaled product but is computed (no input)")
        return self.parameters[node]

    def scale_name(self, scale: torch.fx.Node | None) -> str:
        """The scale input's name; None for an operand without a scale (the template's unit scale)."""
        return "None" if scale is None else self.input_name(scale)

    def product_operands(self) -> tuple[dict, int, str]:
        a8, b8, scale_a, scale_b, a_map, b_map, scale_a_map, scale_b_map, m, n, k = self.product.args
        self.lines += [f"A = _strided({self.input_name(a8)}, {a_map[0]}, ({m}, {k}), ({a_map[1]}, {a_map[2]}))",
                       f"B = _strided({self.input_name(b8)}, {b_map[0]}, ({k}, {n}), ({b_map[1]}, {b_map[2]}))",
                       f"SA = _scale_vector({self.scale_name(scale_a)}, {scale_a_map[0]}, A.device)",
                       f"SB = _scale_vector({self.scale_name(scale_b)}, {scale_b_map[0]}, A.device)"]
        group = k_group(scale_a_map, scale_b_map, k)
        types = [str(tensor_meta(t).dtype).replace("torch.", "") for t in (a8, b8)]
        fields = {"a_casts": [], "b_casts": [], "dot_dtype": "fp8",
                  "scaled": {"a_type": types[0], "b_type": types[1], "a_grouped": scale_a_map[3] < k,
                             "b_grouped": scale_b_map[1] < k}}
        scales = ", ".join(["SA", *map(str, scale_a_map[1:]), "SB", *map(str, scale_b_map[1:])])
        return fields, k, f", scales=({scales}), k_group={group}"


def scaled_gemm_program(capture: Capture) -> dict:
    """The program for one captured shape (kernelbench.generate.gemmprogram.gemm_program's form) when its graph is
    one product of scaled fp8 operands and an epilogue; raises Unsupported otherwise."""
    rewrite_scaled_products(capture)
    return ScaledGemmLowering(capture).lower()
