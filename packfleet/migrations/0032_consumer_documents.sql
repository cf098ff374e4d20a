-- KYC documents of a consumer: an uploaded file (stored by content hash under the documents
-- folder) or a link given by the dealer. Document numbers are encrypted like Aadhaar numbers.
CREATE TABLE consumer_documents (
    id                  bigserial PRIMARY KEY,
    consumer_id         bigint NOT NULL REFERENCES consumers (id),
    document_type       text NOT NULL,
    document_number_enc bytea,
    document_url        text,
    sha256              text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type        text,
    size_bytes          bigint,
    original_name       text,
    status              text NOT NULL DEFAULT 'pending_verification'
                        CHECK (status IN ('pending_verification', 'verified', 'rejected')),
    uploaded_by         text NOT NULL,
    uploaded_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (sha256 IS NOT NULL OR document_url IS NOT NULL)
);
CREATE INDEX consumer_documents_consumer_idx ON consumer_documents (consumer_id, uploaded_at DESC);
