import asyncio


async def handle(event, ctx):
    await asyncio.sleep(0.01)
    return b"async:" + event
