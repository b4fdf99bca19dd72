"""taskfabric-spark: Spark tasks, Spark DataFrames as typed values, and the `spark-local` and
`spark-submit` backends.

```python
from pyspark.sql import DataFrame
from taskfabric import task
from taskfabric_spark import Spark, spark_session

@task(config=Spark(conf={"spark.sql.shuffle.partitions": 4}))
def numbers(n: int) -> DataFrame:
    return spark_session().range(n)
```

See docs/plugins/spark.md.
"""

from taskfabric_spark._config import Spark
from taskfabric_spark._errors import SparkTaskError
from taskfabric_spark._session import SparkSessionUnavailableError, check_java, spark_session
from taskfabric_spark._task_type import SparkTaskType

__version__ = "0.1.0"

__all__ = [
    "Spark",
    "SparkSessionUnavailableError",
    "SparkTaskError",
    "SparkTaskType",
    "__version__",
    "check_java",
    "spark_session",
]
