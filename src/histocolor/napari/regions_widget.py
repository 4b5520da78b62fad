"""The "Regions" dock widget: segment both images, correct the labels by hand, transfer by region."""

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, LineEdit, PushButton, create_widget
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem

from histocolor.errors import HistocolorError
from histocolor.napari._layers import SAME_LAYER, add_result, check_layer, notify_error, separate_pickers, start_worker
from histocolor.regions import parse_region_map
from histocolor.segment import get_segmenter
from histocolor.transfer import METHODS, ColorTransfer

# The model-backed ones need their files in $HISTOCOLOR_HOME/models (see the README).
SEGMENTERS = ("slic", "ade20k", "voc", "onnx:efficientvit_seg_b0_cityscapes.onnx")
COLUMNS = ("source region", "class", "reference label(s)")


def regions_name(image_layer) -> str:
    return f"{image_layer.name} regions"


def parse_targets(text: str) -> list[int]:
    """ "3" or "3, 5" -> [3, 5]; blank -> [] (the region follows the global transfer)."""
    cells = [cell.strip() for cell in text.replace(";", ",").split(",") if cell.strip()]
    try:
        return [int(cell) for cell in cells]
    except ValueError:
        raise HistocolorError(f"reference labels must be integers separated by commas, got {text!r}") from None


class RegionsWidget(Container):
    """Segment, correct with napari's label tools, match regions in the table, transfer."""

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer
        self.source = create_widget(annotation=Image, label="source")
        self.reference = create_widget(annotation=Image, label="reference")
        self.segmenter = ComboBox(choices=SEGMENTERS, value="slic", label="segmenter")
        self.other_segmenter = LineEdit(value="", label="or by name")
        self.other_segmenter.tooltip = (
            "hf:<model directory or id>, torchvision:<name>, onnx:<model file>; overrides the list when given"
        )
        self.segment_button = PushButton(text="Segment both")
        self.empty_button = PushButton(text="Empty labels to paint")
        self.source_labels = create_widget(annotation=Labels, label="source labels", options={"nullable": True})
        self.reference_labels = create_widget(annotation=Labels, label="reference labels", options={"nullable": True})
        self.refresh_button = PushButton(text="Refresh table")
        self.method = ComboBox(choices=METHODS, value="analogy", label="method")
        self.strength = FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, label="strength")
        self.run_button = PushButton(text="Transfer by regions")
        self.segment_button.changed.connect(self.segment)
        self.empty_button.changed.connect(self.empty_labels)
        self.refresh_button.changed.connect(self.refresh_table)
        self.run_button.changed.connect(self._clicked)
        self.extend(
            [self.source, self.reference, self.segmenter, self.other_segmenter, self.segment_button, self.empty_button,
             self.source_labels, self.reference_labels, self.refresh_button, self.method, self.strength, self.run_button]
        )
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.native.layout().addWidget(self.table)
        self.class_names: dict[int, str] = {}
        self.worker = None
        self._engine = None
        self._images = separate_pickers(self.source, self.reference)

    def reset_choices(self, *args) -> None:
        """The layer lists changed (napari calls this): refresh the pickers, keep the images apart."""
        super().reset_choices(*args)
        self._images = separate_pickers(self.source, self.reference, getattr(self, "_images", 0))

    # ----------------------------------------------------------------------- labels layers

    def _labels_layer(self, image_layer, labels: np.ndarray):
        """Add (or replace the data of) the Labels layer ``<image> regions`` over ``image_layer``."""
        name = regions_name(image_layer)
        if name in self._viewer.layers and isinstance(self._viewer.layers[name], Labels):
            layer = self._viewer.layers[name]
            layer.data = labels
            return layer
        return self._viewer.add_labels(
            labels, name=name, scale=image_layer.scale, translate=image_layer.translate, opacity=0.5
        )

    def _use_labels(self, source_labels: np.ndarray, reference_labels: np.ndarray) -> None:
        source_layer, reference_layer = self.source.value, self.reference.value
        self.reset_choices()
        self.source_labels.value = self._labels_layer(source_layer, source_labels)
        self.reference_labels.value = self._labels_layer(reference_layer, reference_labels)
        self.reset_choices()
        self.refresh_table()

    def empty_labels(self, *_) -> None:
        """Blank Labels layers the size of each image, to paint regions from scratch."""
        try:
            shapes = [check_layer(layer, role).data.shape for layer, role in
                      ((self.source.value, "source"), (self.reference.value, "reference"))]
        except HistocolorError as error:
            notify_error(error)
            return
        self.class_names = {}
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
        and the reference label(s) it takes (by default the same label, when the reference has it)."""
        source_layer, reference_layer = self.source_labels.value, self.reference_labels.value
        if source_layer is None or reference_layer is None:
            self.table.setRowCount(0)
            return
        previous = self.region_map(strict=False)
        present = set(np.unique(np.asarray(reference_layer.data)).tolist()) - {0}
        labels = [label for label in np.unique(np.asarray(source_layer.data)).tolist() if label != 0]
        self.table.setRowCount(len(labels))
        for row, label in enumerate(labels):
            item = QTableWidgetItem(str(label))
            item.setFlags(item.flags() & ~_editable())
            red, green, blue = (np.asarray(source_layer.get_color(label))[:3] * 255).astype(int)
            item.setBackground(QColor(int(red), int(green), int(blue)))
            self.table.setItem(row, 0, item)
            name = QTableWidgetItem(self.class_names.get(label, ""))
            name.setFlags(name.flags() & ~_editable())
            self.table.setItem(row, 1, name)
            targets = previous.get(label, [label] if label in present else [])
            self.table.setItem(row, 2, QTableWidgetItem(", ".join(str(t) for t in targets)))
        self.table.resizeColumnsToContents()

    def set_targets(self, source_label: int, targets: list[int]) -> None:
        """Edit the table: the reference labels that ``source_label`` takes its colours from."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == str(source_label):
                self.table.item(row, 2).setText(", ".join(str(t) for t in targets))
                return
        raise HistocolorError(f"the source labels have no region {source_label}: refresh the table")

    def region_map(self, strict: bool = True) -> dict[int, list[int]]:
        """The table as a region map; a blank cell, and label 0 (unpainted), follow the global transfer."""
        mapping = {0: []}
        for row in range(self.table.rowCount()):
            source_item, target_item = self.table.item(row, 0), self.table.item(row, 2)
            if source_item is None or target_item is None:
                continue
            try:
                mapping[int(source_item.text())] = parse_targets(target_item.text())
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
            source, reference = check_layer(source_layer, "source"), check_layer(reference_layer, "reference")
            labels = []
            for layer, role in ((self.source_labels.value, "source"), (self.reference_labels.value, "reference")):
                if layer is None:
                    raise HistocolorError(f"pick or create the {role} labels (Segment both, or Empty labels to paint)")
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
            self, self.run_button, run, returned=lambda image: add_result(self._viewer, image, name, source_layer, True),
            description=f"Transfer by regions ({method})",
        )


def _rgb(pixels) -> np.ndarray:
    from histocolor.imageio import as_image

    return as_image(pixels.read()).rgb


def _editable():
    from qtpy.QtCore import Qt

    return Qt.ItemFlag.ItemIsEditable
