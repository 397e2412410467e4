"""The JSON the API answers with, as pydantic models (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, in words")
    fields: list[dict] | None = Field(None, description="for invalid fields: each field and its problem")


class Timing(BaseModel):
    total_s: float = Field(description="from the request's arrival to the answer")
    queue_s: float = Field(description="waiting for the inference worker")
    inference_s: float = Field(description="the batch that carried this image, through the model")
    batch_images: int = Field(description="images in that batch (requests waiting together share a batch)")


class ConceptModel(BaseModel):
    word: str = Field(description="a caption word for what the encoder's ImageNet classifier sees", examples=["cat"])
    p: float = Field(ge=0, le=1, description="its probability: the sum of its ImageNet classes'", examples=[0.81])


class CaptionResponse(BaseModel):
    image: str = Field(description="the uploaded file's name")
    caption: str
    concepts: list[ConceptModel] = Field(description="the visual concepts the model had in mind, most probable "
                                                     "first (the model's concept slots; empty ones left out)")
    model: str
    beam: int
    width: int
    height: int
    format: str = Field(description="the image type, sniffed from its bytes")
    timing: Timing


class ModelEntry(BaseModel):
    name: str
    label: str = Field(description="for people: decoder kind and name")
    decoder: str
    encoder: str
    backend: str = Field(description="onnx (ONNX Runtime) or torch")
    vocab_size: int
    default_beam: int
    max_beam: int = Field(description="the widest beam a request may ask of this model: the server's max_beam, or "
                                      "the model's own beam (default_beam) if that is wider")
    max_len: int
    default: bool
    metrics: dict = Field(default_factory=dict, description="the checkpoint's recorded dev metrics")


class ModelsResponse(BaseModel):
    default: str
    max_beam: int = Field(description="the server's max_beam setting (a model whose own beam is wider allows that: "
                                      "see each model's max_beam)")
    models: list[ModelEntry]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    models: list[str]
    pending: int = Field(description="requests waiting for the inference worker")
    batches: int = Field(description="batches run since the start")
    uptime_s: float


class ConfigResponse(BaseModel):
    output_dir: str
    max_upload_bytes: int
    max_images: int
    max_beam: int
    unsplash: bool = Field(description="whether sample images come from Unsplash (else from the shipped gallery)")


class AttributionModel(BaseModel):
    text: str
    photographer: str | None = None
    photographer_url: str | None = None
    photo_url: str | None = None
    source_url: str | None = None
    licence: str | None = None


class SampleResponse(BaseModel):
    id: str = Field(description="pass it to /api/save so the save is credited (and counted by Unsplash)")
    source: Literal["unsplash", "gallery"]
    filename: str
    media_type: str
    width: int
    height: int
    data_url: str = Field(description="the image, as a data: URL")
    attribution: AttributionModel | None
    description: str | None = None
    notice: str | None = Field(None, description="why the gallery was used although Unsplash is configured")


class SaveResponse(BaseModel):
    folder: str = Field(description="the output folder, absolute")
    stem: str
    files: dict[str, str] = Field(description="image, text, json, captioned -> file name in the folder")
    caption: str
