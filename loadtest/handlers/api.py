"""A web API on Lambda: a FastAPI app behind Mangum, called with API Gateway (HTTP API) events.

    forkric local loadtest.handlers.api.handler --port 9000 &
    locust -f loadtest/locustfile.py --host http://127.0.0.1:9000 \
        --event @loadtest/events/api-gateway.json
"""

from __future__ import annotations

from fastapi import FastAPI
from mangum import Mangum
from pydantic import BaseModel

app = FastAPI(title="forkric example API")


class Order(BaseModel):
    item: str
    quantity: int = 1
    unit_price: float = 0.0


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    return {"item_id": item_id, "q": q}


@app.post("/orders")
def create_order(order: Order) -> dict[str, object]:
    return {"item": order.item, "total": round(order.quantity * order.unit_price, 2)}


handler = Mangum(app, lifespan="off")
