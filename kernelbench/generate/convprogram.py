"""A captured graph read as one convolution with an elementwise epilogue (the conv family's front end).

`conv_program(capture)` accepts a graph (graph.capture_at: concrete sizes) whose work is one
aten.convolution (conv1d/2d/3d, transposed or not: stride, padding, dilation, groups, bias) whose
operands come from inputs through views and casts, followed by elementwise ops on its result and views of
it: the gemm family's reading (kernelbench.generate.gemmprogram.GemmLowering), with the convolution as the
product. Before the convolution, zero padding (`F.pad`, aten.constant_pad_nd) of the spatial dimensions
folds into the kernel's bounds checks, and a concatenation of inputs is replayed on the host (one copy).

Coordinates. The kernel sees the result [N, C_out, *S] as a batch of matrices: batch = image, row =
output position (S flattened), column = output channel, i.e. `out.view(N, C_out, P).permute(0, 2, 1)`;
every epilogue operand and destination is viewed that way on the host (strides, no copies).
The GEMM is M = positions, N = output channels of a group, K = input channels of a group x kernel volume;
the im2col addresses are computed in the kernel. A convolution whose groups each read one input channel
(depthwise) has K = kernel volume alone: a direct kernel (no tensor cores) takes it.
"""

from __future__ import annotations

import math

import torch
import torch.fx

from kernelbench.generate.frontend import TL, Unsupported, Value, compute_type, rounded_as_eager, tensor_meta
from kernelbench.generate.gemmprogram import DOT_DTYPES, HOST_VIEWS, GemmLowering, _host_view, _is_cast

aten = torch.ops.aten

CONVOLUTION = aten.convolution.default


class ConvLowering(GemmLowering):
    def find_product(self) -> torch.fx.Node:
        found = [n for n in self.nodes if n.op == "call_function" and n.target is CONVOLUTION]
        if len(found) != 1:
            raise Unsupported(f"{len(found)} convolutions (the conv family takes exactly one)")
        node = found[0]
        self.spatial = tensor_meta(node).dim() - 2
        if not 1 <= self.spatial <= 3:
            raise Unsupported(f"a {self.spatial}-d convolution (1-d, 2-d and 3-d only)")
        return node

    # -------------------------------------------------------------- operands

    def conv_input(self, node: torch.fx.Node) -> tuple[str, list[torch.dtype], list[int]]:
        """(host text, casts in order, zero padding before each spatial dim) of the convolution's input."""
        casts, views, padding = [], [], [0] * self.spatial
        while isinstance(node, torch.fx.Node) and node.op == "call_function":
            if _is_cast(node):
                casts.append(tensor_meta(node).dtype)
            elif node.target is aten.constant_pad_nd.default and not views:
                self.fold_padding(node, padding)
            elif node.target in HOST_VIEWS:
                views.append(node)
            elif node.target is aten.cat.default and not node.kwargs:
                parts = []
                for part in node.args[0]:
                    text, part_casts = self.host_tensor(part)
                    if part_casts:
                        raise Unsupported("a cast inside a concatenation that feeds the convolution")
                    parts.append(text)
                dim = node.args[1] if len(node.args) > 1 else 0
                text = f"torch.cat([{', '.join(parts)}], {dim})"
                break
            else:
                raise Unsupported(f"{node.target} feeds the convolution (only views, casts, zero padding and "
                                  f"concatenation of inputs may)")
            node = node.args[0]
        else:
            if not isinstance(node, torch.fx.Node) or node.op != "placeholder" or node in self.scalars:
                raise Unsupported("a convolution input that is not an input tensor")
            text = self.parameters[node]
        for view in reversed(views):
            text = _host_view(view, text)
        return text, casts[::-1], padding

    def fold_padding(self, node: torch.fx.Node, padding: list[int]) -> None:
        """F.pad's (last dim first) zero padding, added to the kernel's padding before each spatial dim: what it
        pads after needs nothing (the output size is the graph's, reads past the input are masked)."""
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
        if value != 0:
            raise Unsupported(f"padding with {value} before the convolution (zero only)")
        rank = tensor_meta(node).dim()
        pads = list(node.args[1])
        for i in range(0, len(pads), 2):
            dim, before, after = rank - 1 - i // 2, pads[i], pads[i + 1]
            if before < 0 or after < 0:
                raise Unsupported("a negative padding (a crop) before the convolution")
            if (before or after) and dim < 2:
                raise Unsupported("padding of the batch or channel dimension before the convolution")
            if dim >= 2:
                padding[dim - 2] += before

    def bias_value(self, node: torch.fx.Node) -> Value:
        """The bias [C_out] read at each tile's columns (its casts applied as eager applies them)."""
        text, casts = self.host_tensor(node)
        n, c = self.product_meta.shape[:2]
        name = f"e{len(self.operands)}"
        self.lines.append(f"{name} = {text}.view(1, 1, {c}).expand({n}, {math.prod(self.product_meta.shape[2:])}, {c})")
        self.operands.append(name)
        loaded = tensor_meta(self.source_chain(node)[0]).dtype
        ctype = compute_type(loaded)
        upper = name.upper()
        expression = f"tl.load({upper} + cols * {upper}_sn, mask=mask, other=0).to({TL[ctype]})"
        for dtype in casts:
            if dtype != ctype:
                expression = f"{expression}.to({TL[dtype]})" + (".to(tl.float32)" if dtype != compute_type(dtype)
                                                                else "")
            ctype = compute_type(dtype)
        var = f"x{len(self.loads)}"
        self.loads[("bias",)] = Value(var, ctype)
        self.body.append(f"{var} = {expression}")
        return self.loads[("bias",)]

    # -------------------------------------------------------------- the epilogue's coordinates

    def product_value(self) -> Value:
        """acc (+ bias), rounded once to the result type as the library rounds."""
        node = self.product
        ctype = compute_type(self.product_meta.dtype)
        expression = "acc"
        if node.args[2] is not None:
            expression = f"(acc + {self.bias_value(node.args[2]).to(ctype)})"
        self.body.append(f"v0 = {rounded_as_eager(expression, node)}")
        return Value("v0", ctype)

    def product_coordinates(self, text: str, probe: torch.Tensor, view: bool) -> str:
        n, c = self.product_meta.shape[:2]
        positions = math.prod(self.product_meta.shape[2:])
        if view:
            try:
                probe.view(n, c, positions)
            except RuntimeError:
                raise Unsupported("an output whose positions are no strided view of the convolution's") from None
        return f"{text}.{'view' if view else 'reshape'}({n}, {c}, {positions}).permute(0, 2, 1)"

    # -------------------------------------------------------------- the program

    def lower(self) -> dict:
        node = self.product
        stride, padding, dilation, transposed, output_padding, groups = node.args[3:9]
        x_text, x_casts, folded = self.conv_input(node.args[0])
        if transposed and any(folded):
            raise Unsupported("zero padding before a transposed convolution")
        w_text, w_casts = self.host_tensor(node.args[1])
        self.lines += [f"X = {x_text}", f"Wt = {w_text}"]
        dot_types = {tensor_meta(node.args[0]).dtype, tensor_meta(node.args[1]).dtype}
        if len(dot_types) != 1 or not dot_types <= set(DOT_DTYPES):
            raise Unsupported(f"convolution operands of dtypes {sorted(map(str, dot_types))}")
        stores = self.epilogue()
        x_meta, w_meta = tensor_meta(node.args[0]), tensor_meta(node.args[1])
        in_channels = x_meta.shape[1]
        out_channels = self.product_meta.shape[1]
        cin_g = in_channels // groups
        kernel = list(w_meta.shape[2:])
        pad = [p + f for p, f in zip(padding, folded)]
        three = 3 - self.spatial   # 1-d and 2-d run as 3-d with leading sizes 1
        geometry = {"stride": [1] * three + list(stride), "padding": [0] * three + pad,
                    "dilation": [1] * three + list(dilation), "kernel": [1] * three + kernel,
                    "out": [1] * three + list(self.product_meta.shape[2:]), "groups": groups,
                    "transposed": bool(transposed), "cout": out_channels}
        operands, stores = [o.upper() for o in self.operands], [{**s, "name": s["name"].upper()} for s in stores]
        strided = [f"{t}{suffix}" for t in operands for suffix in ("", "_sb", "_sm", "_sn")]
        written = [f"{s['name']}{suffix}" for s in stores for suffix in ("", "_sb", "_sm", "_sn")]
        # true multiply-adds: each output (each input, transposed) meets C_in/groups (C_out/groups) x kernel taps
        macs = (x_meta.numel() * out_channels // groups if transposed else self.product_meta.numel() * cin_g) \
            * math.prod(kernel)
        tuple_ = (lambda items: "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")")
        return {"lines": self.lines,
                "arguments": f"X, Wt, {tuple_(self.operands)}, {tuple_(self.kernel_scalars)}, "
                             f"{tuple_([s['name'].lower() for s in stores])}, {geometry!r}",
                "kernel": {"a_casts": [f"a = a.to({TL[t]})" for t in x_casts],
                           "b_casts": [f"b = b.to({TL[t]})" for t in w_casts],
                           "dot_dtype": str(dot_types.pop()).replace("torch.", ""), "direct": cin_g == 1,
                           "body": self.body, "stores": stores,
                           "parameters": strided + [f"p{i}" for i in range(len(self.kernel_scalars))] + written},
                "flops": 2 * macs, "direct": cin_g == 1,
                "batch": self.product_meta.shape[0], "m": math.prod(self.product_meta.shape[2:]),
                "n": out_channels // groups, "k": cin_g * math.prod(kernel), "groups": groups}


def conv_program(capture) -> dict:
    """The program for one captured shape: host lines (a function of a0.. and o0..), the kernel-side
    pieces (operand casts, epilogue body, stores), the geometry and the GEMM's sizes. Raises Unsupported."""
    return ConvLowering(capture).lower()
