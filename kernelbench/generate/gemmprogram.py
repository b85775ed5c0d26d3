"""A captured graph read as one matrix product with an elementwise epilogue (the gemm family's front end).

`gemm_program(capture)` accepts a graph (graph.capture_at: concrete sizes) whose work is one
mm / addmm / bmm / baddbmm whose operands come from inputs through views and casts, followed by
elementwise ops on the product (bias, activation, residual, scale, cast) and views of it. It returns:
  - host lines: the operands' views replayed with torch on the caller's tensors (free: strides change,
    no data moves), every epilogue operand and every destination viewed in the product's coordinates
    (batch, row, column), then one call of the template's launcher;
  - the kernel-side text: the operands' casts (applied to the loaded tiles) and the epilogue body, an
    expression per node from the front end's rule table (kernelbench.generate.frontend.RULES), computed
    in fp32 and rounded to half precision where eager rounds, stored once into each destination.
Anything else raises Unsupported with the node that broke the pattern.

Layouts. A value downstream of the product is a view of it: the chain of views from the product to it,
replayed on meta tensors, gives its (shape, strides), and two values combined elementwise must agree on
it. The inverse chain maps a tensor of the value's shape back to the product's shape, which is how a
bias [N] broadcast to [B, S, N] or a destination [S, B, N] of a permuted product become strided views
the kernel indexes with (batch, row, column).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from kernelbench.generate.frontend import (ORDER_KEEPING_VIEWS, RULES, TL, Unsupported, Value, compute_type,
                                           literal, literal_type, op_path, rounded_as_eager,
                                           tensor_meta)
from kernelbench.generate.graph import Capture

aten = torch.ops.aten
prims = torch.ops.prims

PRODUCTS = {aten.mm.default: 2, aten.addmm.default: 2, aten.bmm.default: 3, aten.baddbmm.default: 3}  # -> rank
DOT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CASTS = {aten._to_copy.default, prims.convert_element_type.default}
PERMUTES = {aten.permute.default, aten.t.default, aten.transpose.int}
# Views an operand may reach the product through, replayed on the host (view becomes reshape: a caller's
# non-contiguous tensor then still works, copied).
IDENTITIES = {aten.alias.default, aten.detach.default, aten.clone.default}
HOST_VIEWS = ORDER_KEEPING_VIEWS | PERMUTES | IDENTITIES | {aten.expand.default, aten.slice.Tensor, aten.select.int}


def _is_cast(node: torch.fx.Node) -> bool:
    return node.target in CASTS and set(node.kwargs) <= {"dtype", "layout", "device", "memory_format"}


def _permutation(node: torch.fx.Node) -> list[int]:
    rank = tensor_meta(node.args[0]).dim()
    if node.target is aten.permute.default:
        return [d % rank for d in node.args[1]]
    if node.target is aten.t.default:
        return list(range(rank))[::-1]
    order = list(range(rank))
    i, j = (d % rank for d in node.args[1:3])
    order[i], order[j] = order[j], order[i]
    return order


def _text(value: Any) -> str:
    """A view's literal argument as Python source."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    raise Unsupported(f"view argument {value!r}")


def _host_view(node: torch.fx.Node, source: str) -> str:
    """`source` with the view `node` applied, as torch code (a reshape for the order-keeping views: a caller's
    non-contiguous tensor is then copied where `view` would raise)."""
    if node.target in IDENTITIES:
        return source
    if node.target in ORDER_KEEPING_VIEWS:
        return f"{source}.reshape({_text(list(tensor_meta(node).shape))})"
    if node.kwargs:
        raise Unsupported(f"view {node.target} with keyword arguments")
    return f"{op_path(node.target)}({', '.join([source] + [_text(a) for a in node.args[1:]])})"


class GemmLowering:
    def __init__(self, capture: Capture):
        graph = capture.module.graph
        graph.eliminate_dead_code()
        self.nodes = list(graph.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.parameters = {n: f"a{i}" for i, n in enumerate(placeholders)}
        self.scalars = {n for n, name in zip(placeholders, capture.inputs) if name in capture.scalar_inputs}
        self.product = self.find_product()
        self.product_meta = tensor_meta(self.product)
        if self.product_meta.dtype not in DOT_DTYPES:
            raise Unsupported(f"a {self.product_meta.dtype} matrix product")
        self.lines: list[str] = []
        self.operands: list[str] = []         # epilogue tensors, in product coordinates (host names)
        self.kernel_scalars: list[str] = []   # host expressions passed as scalar kernel parameters
        self.body: list[str] = []
        self.loads: dict[tuple, Value] = {}
        self.computed: dict[tuple, Value] = {}   # elementwise work on inputs, at a layout -> its value

    def find_product(self) -> torch.fx.Node:
        """The one product node the epilogue is read around (a subclass takes another op: convprogram)."""
        products = [n for n in self.nodes if n.op == "call_function" and n.target in PRODUCTS]
        if len(products) != 1:
            raise Unsupported(f"{len(products)} matrix products (the gemm family takes exactly one)")
        return products[0]

    # -------------------------------------------------------------- operands of the product

    def source_chain(self, node: Any) -> tuple[torch.fx.Node, list[torch.fx.Node], list[torch.dtype]]:
        """(placeholder, views from it in order, casts in order) of an operand reached through views and casts."""
        views, casts = [], []
        while isinstance(node, torch.fx.Node) and node.op == "call_function":
            if _is_cast(node):
                casts.append(tensor_meta(node).dtype)
            elif node.target in HOST_VIEWS:
                views.append(node)
            else:
                raise Unsupported(f"{node.target} feeds the matrix product or its epilogue (only views and casts "
                                  f"of inputs may)")
            node = node.args[0]
        if not isinstance(node, torch.fx.Node) or node.op != "placeholder" or node in self.scalars:
            raise Unsupported("an operand that is not an input tensor")
        return node, views[::-1], casts[::-1]

    def host_tensor(self, node: Any) -> tuple[str, list[torch.dtype]]:
        placeholder, views, casts = self.source_chain(node)
        text = self.parameters[placeholder]
        for view in views:
            text = _host_view(view, text)
        return text, casts

    def matrix(self, node: Any, name: str) -> list[str]:
        """Host line binding `name` to the operand; kernel lines casting its tile as the graph casts it."""
        text, casts = self.host_tensor(node)
        self.lines.append(f"{name} = {text}")
        return [f"{name.lower()} = {name.lower()}.to({TL[dtype]})" for dtype in casts]

    # -------------------------------------------------------------- the epilogue

    def epilogue(self) -> list[dict]:
        """Walk the nodes downstream of the product: their values (kernel expressions) and layouts."""
        layout: dict[torch.fx.Node, list[torch.fx.Node]] = {self.product: []}   # node -> views from the product
        values: dict[torch.fx.Node, Value] = {}
        values[self.product] = self.product_value()
        downstream = self.nodes[self.nodes.index(self.product) + 1:]
        for node in downstream:
            if node.op == "output":
                break
            inside = [a for a in node.all_input_nodes if a in layout]
            if not inside:
                continue   # an operand's view or cast: read where it is used
            meta = tensor_meta(node)
            if meta is None or meta.numel() != self.product_meta.numel():
                raise Unsupported(f"{node.target} after the product changes its element count")
            if node.target in ORDER_KEEPING_VIEWS | PERMUTES | IDENTITIES and node.args[0] in layout:
                layout[node] = layout[node.args[0]] + ([] if node.target in IDENTITIES else [node])
                values[node] = values[node.args[0]]
                continue
            if node.target not in RULES or meta.dtype not in TL:
                raise Unsupported(f"{node.target} after the product (only views and elementwise ops may follow it)")
            chains = {self.layout_key(layout[a]) for a in inside}
            if len(chains) != 1 or list(tensor_meta(inside[0]).shape) != list(meta.shape):
                raise Unsupported(f"{node.target} combines the product with itself in two layouts")
            layout[node] = layout[inside[0]]
            arguments = [self.operand(a, layout, values, node) for a in node.args]
            keywords = {k: v for k, v in node.kwargs.items() if not isinstance(v, torch.fx.Node)}
            expression = rounded_as_eager(RULES[node.target](arguments, keywords, compute_type(meta.dtype)), node)
            var = f"v{len(values)}"
            self.body.append(f"{var} = {expression}")
            values[node] = Value(var, compute_type(meta.dtype))
        returned = next(n for n in self.nodes if n.op == "output").args[0]
        returned = list(returned) if isinstance(returned, (tuple, list)) else [returned]
        stores = []
        for i, node in enumerate(returned):
            if node not in layout:
                raise Unsupported(f"output {i} is not computed from the product")
            destination = f"d{i}"
            self.lines.append(f"{destination} = {self.to_product(f'o{i}', layout[node], view=True)}")
            dtype = tensor_meta(node).dtype
            stores.append({"name": destination, "value": f"{values[node].to(compute_type(dtype))}.to({TL[dtype]})"})
        return stores

    def product_value(self) -> Value:
        """The accumulator as the product node's value: alpha * acc + beta * bias for addmm / baddbmm, rounded
        once to the product's type (the library's epilogue rounds once)."""
        node = self.product
        ctype = compute_type(self.product_meta.dtype)
        expression = "acc"
        if node.target in (aten.addmm.default, aten.baddbmm.default):
            alpha, beta = node.kwargs.get("alpha", 1), node.kwargs.get("beta", 1)
            bias = self.load(node.args[0], [])
            scaled = expression if alpha == 1 else f"(acc * {literal(alpha, ctype).text})"
            expression = f"({scaled} + {bias.to(ctype)})" if beta == 1 else \
                f"({scaled} + {bias.to(ctype)} * {literal(beta, ctype).text})" if beta != 0 else scaled
        expression = rounded_as_eager(expression, node)
        self.body.append(f"v0 = {expression}")
        return Value("v0", ctype)

    @staticmethod
    def layout_key(chain: list[torch.fx.Node]) -> tuple:
        """The chain's views as (permutation, or None for a reshape; resulting shape), a run of reshapes as one.
        Equal keys pick the product's elements in the same order (unequal ones may too: such a graph is refused)."""
        key: list[tuple] = []
        for node in chain:
            step = (tuple(_permutation(node)) if node.target in PERMUTES else None, tuple(tensor_meta(node).shape))
            merged = step[0] is None and key and key[-1][0] is None
            key = key[:-1] + [step] if merged else key + [step]
        return tuple(key)

    def to_product(self, text: str, chain: list[torch.fx.Node], view: bool) -> str:
        """Host code for a tensor of the chain's end shape seen in the product's shape (the inverse views).
        `view`: must not copy (a destination): checked here on a contiguous meta tensor."""
        probe = torch.empty(tensor_meta(chain[-1]).shape if chain else self.product_meta.shape, device="meta")
        for node in reversed(chain):
            before = list(tensor_meta(node.args[0]).shape)
            if node.target in PERMUTES:
                order = _permutation(node)
                inverse = sorted(range(len(order)), key=order.__getitem__)
                text, probe = f"{text}.permute({_text(inverse)})", probe.permute(inverse)
            else:
                try:
                    probe = probe.view(before) if view else probe.reshape(before)
                except RuntimeError:
                    raise Unsupported("an output whose layout is no strided view of the product") from None
                text = f"{text}.{'view' if view else 'reshape'}({_text(before)})"
        return self.product_coordinates(text, probe, view)

    def product_coordinates(self, text: str, probe: torch.Tensor, view: bool) -> str:
        """A tensor of the product's shape (host code `text`, laid out like `probe`) as the kernel indexes it:
        the product's shape itself here; a product that is no matrix (a convolution) views it as one."""
        return text

    def load(self, arg: torch.fx.Node, chain: list[torch.fx.Node]) -> Value:
        """An epilogue operand from outside (bias, residual, scale) read at the product's coordinates."""
        shape = tensor_meta(chain[-1]).shape if chain else self.product_meta.shape
        key = (arg, tuple(shape), self.layout_key(chain))
        if key not in self.loads:
            text, casts = self.host_tensor(arg)
            self.loads[key] = self.load_named(self.to_product(f"{text}.expand({_text(list(shape))})", chain,
                                                              view=False),
                                              tensor_meta(self.source_chain(arg)[0]).dtype, casts)
        return self.loads[key]

    def load_named(self, host: str, loaded_type: torch.dtype, casts: list[torch.dtype]) -> Value:
        """An operand (host code `host`, a tensor of the product's shape) loaded at the tile's coordinates and
        cast as the graph casts it."""
        name = f"e{len(self.operands)}"
        self.lines.append(f"{name} = {host}")
        self.operands.append(name)
        if loaded_type not in TL:
            raise Unsupported(f"an epilogue operand of dtype {loaded_type}")
        ctype = compute_type(loaded_type)
        var = f"x{len(self.loads)}"
        expression = f"tl.load({name.upper()} + batch * {name.upper()}_sb + rows * {name.upper()}_sm + " \
                     f"cols * {name.upper()}_sn, mask=mask, other=0).to({TL[ctype]})"
        for dtype in casts:   # each cast as eager does it: a half type rounds, and the kernel widens it back
            if dtype != ctype:
                expression = f"{expression}.to({TL[dtype]})" + (".to(tl.float32)" if dtype != compute_type(dtype)
                                                                else "")
            ctype = compute_type(dtype)
        self.body.append(f"{var} = {expression}")
        return Value(var, ctype)

    def operand(self, arg: Any, layout: dict, values: dict, consumer: torch.fx.Node) -> Value:
        if isinstance(arg, torch.fx.Node) and arg not in values:
            inside = next(a for a in consumer.all_input_nodes if a in layout)
            return self.outside(arg, layout[inside])
        return self.plain_operand(arg, values)

    def plain_operand(self, arg: Any, values: dict) -> Value:
        """A value of the epilogue, or a literal."""
        if isinstance(arg, torch.fx.Node):
            return values[arg]
        if arg is None or isinstance(arg, str):
            return Value(repr(arg), torch.float32)
        if isinstance(arg, torch.dtype):
            return Value(str(arg), torch.float32)
        return literal(arg, literal_type(arg))

    def outside(self, arg: torch.fx.Node, chain: list[torch.fx.Node]) -> Value:
        """An epilogue operand that does not depend on the product, at the coordinates `chain` reads: a scalar
        input (a kernel parameter), an input's view or cast (loaded), or elementwise work on such operands
        (`x_scale * w_scale`), computed in the epilogue from its own operands, broadcast as they are."""
        if arg in self.scalars:
            meta = arg.meta.get("val")
            kind = meta.dtype if isinstance(meta, torch.Tensor) else literal_type(meta)
            parameter = f"p{len(self.kernel_scalars)}"
            self.kernel_scalars.append(self.parameters[arg])
            return Value(parameter, torch.float32 if kind.is_floating_point else
                         torch.bool if kind == torch.bool else torch.int64)
        meta = tensor_meta(arg)
        if meta is None:
            raise Unsupported(f"a non-tensor operand {arg.name} in the epilogue")
        if arg.op == "call_function" and arg.target in RULES and not _is_cast(arg) and meta.dtype in TL:
            key = (arg, self.layout_key(chain))
            if key not in self.computed:
                arguments = [self.outside(a, chain) if isinstance(a, torch.fx.Node) else self.plain_operand(a, {})
                             for a in arg.args]
                keywords = {k: v for k, v in arg.kwargs.items() if not isinstance(v, torch.fx.Node)}
                expression = rounded_as_eager(RULES[arg.target](arguments, keywords, compute_type(meta.dtype)), arg)
                var = f"c{len(self.computed)}"
                self.body.append(f"{var} = {expression}")
                self.computed[key] = Value(var, compute_type(meta.dtype))
            return self.computed[key]
        return self.load(arg, chain)

    # -------------------------------------------------------------- the program

    def product_operands(self) -> tuple[dict, int, str]:
        """Host lines binding the product's operands A and B: (the kernel's fields for them, K, further launch
        arguments). Here plain matrices of one float type, cast as the graph casts them."""
        a_casts = self.matrix(self.product.args[-2], "A")
        b_casts = self.matrix(self.product.args[-1], "B")
        dot_types = {tensor_meta(self.product.args[-2]).dtype, tensor_meta(self.product.args[-1]).dtype}
        if len(dot_types) != 1 or not dot_types <= set(DOT_DTYPES):
            raise Unsupported(f"matrix operands of dtypes {sorted(map(str, dot_types))}")
        fields = {"a_casts": a_casts, "b_casts": b_casts, "dot_dtype": str(dot_types.pop()).replace("torch.", "")}
        return fields, tensor_meta(self.product.args[-2]).shape[-1], ""

    def lower(self) -> dict:
        fields, k, launch = self.product_operands()
        stores = self.epilogue()
        shape = list(self.product_meta.shape)
        batch, m, n = ([1] + shape)[-3:]
        operands, stores = [o.upper() for o in self.operands], [{**s, "name": s["name"].upper()} for s in stores]
        strided = [f"{t}{suffix}" for t in operands for suffix in ("", "_sb", "_sm", "_sn")]
        written = [f"{s['name']}{suffix}" for s in stores for suffix in ("", "_sb", "_sm", "_sn")]
        return {"lines": self.lines, "arguments": f"A, B, {_tuple(self.operands)}, {_tuple(self.kernel_scalars)}, "
                                                  f"{_tuple([s['name'].lower() for s in stores])}{launch}",
                "kernel": {**fields, "body": self.body, "stores": stores,
                           "parameters": strided + [f"p{i}" for i in range(len(self.kernel_scalars))] + written},
                "batch": batch, "m": m, "n": n, "k": k}


def _tuple(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def gemm_program(capture: Capture) -> dict:
    """The program for one captured shape: host lines (a function of a0.. and o0..), the kernel-side
    pieces (operand casts, epilogue body, stores) and the product's sizes. Raises Unsupported."""
    return GemmLowering(capture).lower()
