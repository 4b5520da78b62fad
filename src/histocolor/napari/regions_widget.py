"""The "Regions" dock widget: segment both images (or load masks, or paint from scratch),
correct the labels by hand with the reference laid out next to the source, pick each source
region's reference class from a drop-down, transfer by region."""

import re
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSlider, LineEdit, PushButton, create_widget
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QComboBox, QHeaderView, QTableWidget, QTableWidgetItem

from histocolor.errors import HistocolorError
from histocolor.napari._layers import (
    SAME_LAYER, DockContainer, PairPickers, add_result, check_layer, check_reference, notify_error, start_worker,
    unwrap,
)
from histocolor.regions import check_labels, label_maps, parse_region_map, read_mask
from histocolor.segment import get_segmenter
from histocolor.engine import METHODS, ColorTransfer

if TYPE_CHECKING:  # napari passes the viewer to a parameter annotated "napari.viewer.Viewer" (the string)
    import napari.viewer

# The model-backed ones need their files in $HISTOCOLOR_HOME/models (see the README).
SEGMENTERS = ("slic", "ade20k", "voc", "onnx:efficientvit_seg_b0_cityscapes.onnx")
COLUMNS = ("source region", "class", "takes the colours of")
# The deep-photo-styletransfer palette's colours, by label (as colour-coded masks are read).
PALETTE_NAMES = ("blue", "green", "black", "white", "red", "yellow", "grey", "light blue", "purple")
GAP = 0.05  # between the source and the reference laid out next to it, as a share of the source's width


def regions_name(image_layer) -> str:
    return f"{image_layer.name} regions"


def parse_targets(text: str) -> list[int]:
    """ "3" or "3, 5" -> [3, 5]; "3 sky" (a drop-down entry) -> [3]; blank -> [] (the region
    follows the global transfer)."""
    cells = [cell.strip() for cell in text.replace(";", ",").split(",") if cell.strip()]
    labels = [re.match(r"-?\d+(?!\S)", cell) for cell in cells]
    if not all(labels):
        raise HistocolorError(f"reference labels must be integers separated by commas, got {text!r}")
    return [int(label.group()) for label in labels]


def mask_labels(masks: list[np.ndarray]) -> tuple[list[np.ndarray], dict[int, str], dict[int, tuple]]:
    """Napari label maps of masks from :func:`read_mask` (read together, as the CLI does), class
    names and class colours.

    Integer masks keep their labels (0, napari's background, follows the global transfer).
    Colour-coded masks have a region for every colour, so they are shifted by one, off the
    background; a class is named by its palette colour or its RGB code, and keeps that colour
    (RGB, 0-255) for its swatch and its Labels layer.
    """
    labels = label_maps(*masks)
    names, colours = {}, {}
    for mask, label_map in zip(masks, labels):
        if mask.ndim != 3:
            continue
        label_map += 1
        for label in np.unique(label_map).tolist():
            colour = tuple(int(value) for value in np.median(mask[label_map == label], axis=0))
            colours[label] = colour
            names[label] = PALETTE_NAMES[label - 1] if label - 1 < len(PALETTE_NAMES) else "#%02x%02x%02x" % colour
    return labels, names, colours


def mask_colormap(colours: dict[int, tuple]):
    """A napari label colour map that shows each class of a colour-coded mask in its own colour
    (labels painted later keep napari's usual colours; 0 stays transparent)."""
    from napari.utils.colormaps import DirectLabelColormap, label_colormap

    usual = label_colormap()
    known = {label: (*(value / 255 for value in colour), 1.0) for label, colour in colours.items()}
    color_dict = {label: known.get(label, usual.map(label)) for label in range(1, 1 + max(255, *colours))}
    return DirectLabelColormap(color_dict={None: usual.map(256), 0: (0.0, 0.0, 0.0, 0.0), **color_dict})


class RegionsWidget(DockContainer):
    """Segment, correct with napari's label tools, match regions in the table, transfer."""

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer = unwrap(viewer)  # the viewer itself: napari hands plugins a proxy
        self.source = create_widget(annotation=Image, label="source")
        self.reference = create_widget(annotation=Image, label="reference")
        self.segmenter = ComboBox(choices=SEGMENTERS, value="slic", label="segmenter")
        self.other_segmenter = LineEdit(value="", label="or by name")
        self.other_segmenter.tooltip = (
            "hf:<model directory or id>, torchvision:<name>, onnx:<model file>; overrides the list when given"
        )
        self.segment_button = PushButton(text="Segment both")
        self.empty_button = PushButton(text="Empty labels to paint")
        self.load_source_button = PushButton(text="Load source mask…")
        self.load_reference_button = PushButton(text="Load reference mask…")
        for button in (self.load_source_button, self.load_reference_button):
            button.tooltip = "an integer label map or a colour-coded mask (PNG, TIFF), as the command line reads them"
        self.side_by_side = CheckBox(value=True, text="lay the reference out next to the source")
        self.side_by_side.tooltip = "both images and their labels side by side, to paint both at once"
        self.source_labels = create_widget(annotation=Labels, label="source labels", options={"nullable": True})
        self.reference_labels = create_widget(annotation=Labels, label="reference labels", options={"nullable": True})
        self.refresh_button = PushButton(text="Refresh table")
        self.method = ComboBox(choices=METHODS, value="analogy", label="method")
        self.strength = FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, label="strength")
        self.run_button = PushButton(text="Transfer by regions")
        self.segment_button.changed.connect(self.segment)
        self.empty_button.changed.connect(self.empty_labels)
        self.load_source_button.changed.connect(lambda *_: self._load_clicked("source"))
        self.load_reference_button.changed.connect(lambda *_: self._load_clicked("reference"))
        self.side_by_side.changed.connect(lambda *_: self.lay_out())
        self.refresh_button.changed.connect(self.refresh_table)
        self.run_button.changed.connect(self._clicked)
        self.extend(
            [self.source, self.reference, self.segmenter, self.other_segmenter, self.segment_button, self.empty_button,
             self.load_source_button, self.load_reference_button, self.side_by_side, self.source_labels,
             self.reference_labels, self.refresh_button, self.method, self.strength, self.run_button]
        )
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setMinimumHeight(150)  # a few rows, even in a short dock (the dock scrolls)
        self.body.layout().addWidget(self.table)
        self.class_names: dict[int, str] = {}
        self.worker = None
        self._engine = None
        self._masks: dict = {}  # image layer -> (mask as read, labels as loaded), for reading a pair together
        self._home: dict = {}  # layer -> its translate before it was laid out next to the source
        self.pickers = PairPickers(viewer, self.source, self.reference, swapped=self._swapped)

    def reset_choices(self, *args) -> None:
        """The layer lists changed (napari calls this): refresh the pickers, keep the images apart."""
        super().reset_choices(*args)
        if hasattr(self, "pickers"):
            self.pickers.choices_changed()

    # ----------------------------------------------------------------------- labels layers

    def _labels_layer(self, image_layer, labels: np.ndarray, colours: dict | None = None):
        """Add (or replace the data of) the Labels layer ``<image> regions`` over ``image_layer``,
        coloured with a colour-coded mask's ``colours`` (else napari's usual label colours)."""
        from napari.utils.colormaps import label_colormap

        name = regions_name(image_layer)
        colormap = mask_colormap(colours) if colours else label_colormap()
        if name in self._viewer.layers and isinstance(self._viewer.layers[name], Labels):
            layer = self._viewer.layers[name]
            layer.data = labels
            layer.colormap = colormap
            return layer
        return self._viewer.add_labels(
            labels, name=name, scale=image_layer.scale, translate=image_layer.translate, opacity=0.5,
            colormap=colormap,
        )

    def _use_labels(self, source_labels: np.ndarray | None, reference_labels: np.ndarray | None,
                    colours: dict | None = None) -> None:
        """New labels for the source and/or the reference (None: that one is left as it is)."""
        layers = {"source": self.source.value, "reference": self.reference.value}
        made = {}
        for role, labels in (("source", source_labels), ("reference", reference_labels)):
            if labels is not None:
                made[role] = self._labels_layer(layers[role], labels, colours.get(role) if colours else None)
        self.reset_choices()
        for role, layer in made.items():
            (self.source_labels if role == "source" else self.reference_labels).value = layer
        self.lay_out()
        self.refresh_table()

    def lay_out(self) -> None:
        """Lay the reference (and its labels) out to the right of the source; every other layer
        moved earlier goes back where it was (all of them, with the box unticked)."""
        source, reference = self.source.value, self.reference.value
        valid = source is not None and reference is not None and source is not reference
        keep = [reference, *(layer for layer in (self.reference_labels.value,) if layer is not None)] if (
            valid and self.side_by_side.value and source.ndim == reference.ndim == 2) else []
        for layer in list(self._home):
            if not any(layer is kept for kept in keep):
                layer.translate = self._home.pop(layer)
        if not keep:
            return
        home = self._home.setdefault(reference, np.array(reference.translate, float))
        low, high = source.extent.world
        place = np.array(source.translate, float)
        place[-1] = high[-1] + GAP * (high[-1] - low[-1])
        moved = False
        for layer in keep:
            self._home.setdefault(layer, home.copy())  # labels made over a moved reference belong to its home
            moved |= not np.allclose(layer.translate, place)
            layer.translate = place
        if moved:
            self._viewer.reset_view()

    def _swapped(self) -> None:
        """The source and reference images traded places (a click in the layer list): so do their labels."""
        self.source_labels.value, self.reference_labels.value = self.reference_labels.value, self.source_labels.value
        self.lay_out()
        self.refresh_table()

    def _load_clicked(self, role: str) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, f"Load the {role}'s mask", "",
                                              "Masks (*.png *.tif *.tiff *.bmp *.gif);;All files (*)")
        if path:
            self.load_mask(path, role)

    def load_mask(self, path, role: str):
        """Read a mask file (integer labels or colour-coded) into ``<image> regions``, a 2-D Labels layer.

        A colour-coded mask is read together with the other image's colour-coded mask (if one was
        loaded and is not painted over since), so that a colour is one label in both.
        Returns the Labels layer (None when refused, with a notification).
        """
        layers = {"source": self.source.value, "reference": self.reference.value}
        pickers = {"source": self.source_labels, "reference": self.reference_labels}
        other = "reference" if role == "source" else "source"
        try:
            check_layer(layers[role], role)
            mask = read_mask(path)
            together = {role: mask}
            earlier = self._masks.get(layers[other])
            if (mask.ndim == 3 and earlier is not None and earlier[0].ndim == 3 and pickers[other].value is not None
                    and np.array_equal(np.asarray(pickers[other].value.data), earlier[1])):
                together[other] = earlier[0]
            arrays, names, colours = mask_labels(list(together.values()))
            labels = {name: check_labels(array, check_layer(layers[name], name).data.shape[:2], name)
                      for name, array in zip(together, arrays)}
        except HistocolorError as error:
            notify_error(error)
            return None
        for name, array in labels.items():
            self._masks[layers[name]] = (together[name], array.copy())
            if together[name].ndim == 2:  # integer labels have no names: forget earlier ones
                for label in np.unique(array).tolist():
                    self.class_names.pop(label, None)
        self.class_names = {**self.class_names, **names}
        coloured = {name: colours for name in together if together[name].ndim == 3}
        self._use_labels(labels.get("source"), labels.get("reference"), coloured)
        return pickers[role].value

    def empty_labels(self, *_) -> None:
        """Blank Labels layers the size of each image, to paint regions from scratch."""
        try:
            shapes = [check_layer(layer, role).data.shape for layer, role in
                      ((self.source.value, "source"), (self.reference.value, "reference"))]
        except HistocolorError as error:
            notify_error(error)
            return
        self.class_names = {}
        if self.source.value is self.reference.value:
            show_info("the source and the reference are the same layer: one Labels layer to paint, used for both; "
                      "map its regions to other labels in the table to move colours within the image")
        self._use_labels(*(np.zeros(shape[:2], np.int32) for shape in shapes))

    def segment(self, *_):
        """Run the segmenter on both images in a worker; returns the worker (None when refused)."""
        if self.worker is not None:
            show_info("the Regions widget is busy: wait for it to finish")
            return None
        name = self.other_segmenter.value.strip() or self.segmenter.value
        try:
            source = check_layer(self.source.value, "source")
            reference = check_layer(self.reference.value, "reference")
        except HistocolorError as error:
            notify_error(error)
            return None

        def run():
            segmenter = get_segmenter(name)
            return segmenter.segment_pair(_rgb(source), _rgb(reference))

        return start_worker(self, self.segment_button, run, returned=self._segmented, description=f"Segment ({name})")

    def _segmented(self, result) -> None:
        # Shifted by one: in napari, label 0 is the background that the eraser paints.
        source_labels, reference_labels, names = result
        self.class_names = {label + 1: name for label, name in names.items()}
        self._use_labels(source_labels + 1, reference_labels + 1)

    # ------------------------------------------------------------------ correspondence table

    def refresh_table(self, *_) -> None:
        """One row per painted source region (label 0 is background): its label, class and colour,
        and a drop-down of the reference's classes (name and colour) it takes its colours from: by
        default the same label when the reference has it, blank (the global transfer) otherwise.
        The drop-down is editable: "3, 5" takes two reference regions."""
        source_layer, reference_layer = self.source_labels.value, self.reference_labels.value
        if source_layer is None or reference_layer is None:
            self.table.setRowCount(0)
            return
        try:
            for layer, role in ((source_layer, "source"), (reference_layer, "reference")):
                check_labels_layer(layer, role)
        except HistocolorError as error:
            notify_error(error)
            return
        previous = self.region_map(strict=False)
        present = [label for label in np.unique(np.asarray(reference_layer.data)).tolist() if label != 0]
        labels = [label for label in np.unique(np.asarray(source_layer.data)).tolist() if label != 0]
        self.table.setRowCount(len(labels))
        for row, label in enumerate(labels):
            item = QTableWidgetItem(str(label))
            item.setFlags(item.flags() & ~_editable())
            item.setBackground(_colour(source_layer, label))
            self.table.setItem(row, 0, item)
            name = QTableWidgetItem(self.class_names.get(label, ""))
            name.setFlags(name.flags() & ~_editable())
            self.table.setItem(row, 1, name)
            choices = QComboBox()
            choices.setEditable(True)
            choices.addItem("")  # blank: the global transfer
            choices.setItemData(0, "the global transfer", _tooltip_role())
            for target in present:
                choices.addItem(_swatch(_colour(reference_layer, target)), self._entry(target))
            targets = previous.get(label, [label] if label in present else [])
            choices.setCurrentText(", ".join(self._entry(target) for target in targets))
            self.table.setCellWidget(row, 2, choices)

    def _entry(self, label: int) -> str:
        """A reference class as the drop-down lists it: "3 sky" (the label, then its name if known)."""
        if label not in self.class_names:
            return str(label)
        name = self.class_names[label].replace(",", " /").replace(";", " /")  # "building, edifice": one entry
        return f"{label} {name}"

    def target_choices(self, source_label: int) -> QComboBox:
        """The drop-down of ``source_label``'s row."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == str(source_label):
                return self.table.cellWidget(row, 2)
        raise HistocolorError(f"the source labels have no region {source_label}: refresh the table")

    def set_targets(self, source_label: int, targets: list[int]) -> None:
        """Edit the table: the reference labels that ``source_label`` takes its colours from."""
        self.target_choices(source_label).setCurrentText(", ".join(self._entry(target) for target in targets))

    def region_map(self, strict: bool = True) -> dict[int, list[int]]:
        """The table as a region map; a blank cell, and label 0 (unpainted), follow the global transfer."""
        mapping = {0: []}
        for row in range(self.table.rowCount()):
            source_item, choices = self.table.item(row, 0), self.table.cellWidget(row, 2)
            if source_item is None or choices is None:
                continue
            try:
                mapping[int(source_item.text())] = parse_targets(choices.currentText())
            except HistocolorError:
                if strict:
                    raise
        return parse_region_map({str(k): v for k, v in mapping.items()})

    # ------------------------------------------------------------------------------ transfer

    def _clicked(self, *_) -> None:
        self.transfer()

    def transfer(self):
        """Transfer by regions in a worker; returns the worker (None when refused)."""
        if self.worker is not None:
            show_info("the Regions widget is busy: wait for it to finish")
            return None
        source_layer, reference_layer = self.source.value, self.reference.value
        try:
            source, reference = check_layer(source_layer, "source"), check_reference(reference_layer)
            labels = []
            for layer, role in ((self.source_labels.value, "source"), (self.reference_labels.value, "reference")):
                if layer is None:
                    raise HistocolorError(f"pick or create the {role} labels (Segment both, or Empty labels to paint)")
                check_labels_layer(layer, role)
                labels.append(np.array(layer.data, dtype=np.int32))  # a copy: painting may go on meanwhile
            region_map = self.region_map()
            # The same image can lend one region's colours to another; each label to itself
            # (or to the global transfer, blank) is a copy.
            if source_layer is reference_layer and all(
                list(targets) in ([], [label]) for label, targets in (region_map or {}).items()
            ):
                raise HistocolorError(SAME_LAYER + " (or map regions to other labels in the table)")
        except HistocolorError as error:
            notify_error(error)
            return None
        method, strength = self.method.value, float(self.strength.value)
        name = f"{source_layer.name} ← {reference_layer.name} ({method}, regions)"

        def run():
            if self._engine is None or self._engine.method != method:  # the model loads once
                self._engine = ColorTransfer(method)
            result = self._engine(source.read(), reference.read(), strength=strength, source_labels=labels[0],
                            reference_labels=labels[1], region_map=region_map)
            return source.restore(result.image)

        return start_worker(
            self, self.run_button, run,
            returned=lambda image: add_result(self._viewer, image, name, source_layer, True, about={
                "reference": reference_layer.name, "method": method, "strength": strength, "regions": True}),
            description=f"Transfer by regions ({method})",
        )


def check_labels_layer(layer, role: str) -> None:
    """A label map is 2-D: a colour-coded mask opened as labels is (H, W, 3), and not one."""
    if layer.ndim != 2:
        shape = "x".join(str(side) for side in np.shape(layer.data))
        raise HistocolorError(
            f"the {role} labels '{layer.name}' are {shape}, not a 2-D label map (a colour-coded mask opened "
            f"as labels?): use Load {role} mask… to read a mask file as regions"
        )


def _rgb(pixels) -> np.ndarray:
    from histocolor.imageio import as_image

    return as_image(pixels.read()).rgb


def _editable():
    from qtpy.QtCore import Qt

    return Qt.ItemFlag.ItemIsEditable


def _tooltip_role():
    from qtpy.QtCore import Qt

    return Qt.ItemDataRole.ToolTipRole


def _colour(labels_layer, label: int) -> QColor:
    red, green, blue = (np.asarray(labels_layer.get_color(label))[:3] * 255).astype(int)
    return QColor(int(red), int(green), int(blue))


def _swatch(colour: QColor) -> QIcon:
    """A small square of ``colour`` for a drop-down entry."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(colour)
    return QIcon(pixmap)
