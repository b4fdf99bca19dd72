"""taskfabric-aws: the `s3` blob store and the `aws-batch` backend.

```toml
[storage]
data_root = "s3://my-bucket/taskfabric"   # every blob in S3; credentials from boto3's chain
```

```toml
[task_types]
python = "batch"

[backends.batch]
driver = "aws-batch"
job_queue = "taskfabric"
image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/etl:3f9c0a1b"
```

See docs/plugins/aws.md.
"""

from taskfabric_aws._batch import BatchBackend
from taskfabric_aws._batch_settings import BatchSettings
from taskfabric_aws._s3 import S3BlobStore, S3Settings, S3StoreError

__version__ = "0.1.0"

__all__ = ["BatchBackend", "BatchSettings", "S3BlobStore", "S3Settings", "S3StoreError"]
