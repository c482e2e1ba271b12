import timeit, random
from listeners.eth_deposits.deposits import deposit_bodies, DEPOSIT_TOPIC
ESC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
def log(i):
    return {"address": ESC.lower(), "topics": [DEPOSIT_TOPIC, "0x"+f"{i:064x}", "0x"+"00"*12+"f39fd6e51aad88f6f4ce6ab8827279cfffb92266", "0x"+"00"*12+f"{i+1:040x}"],
            "data": "0x"+f"{i*10**15:064x}", "blockNumber": hex(1000+i//100), "transactionHash": "0x"+f"{i*7:064x}", "logIndex": hex(i%100),
            "blockHash": "0x"+"ab"*32, "transactionIndex": "0x0", "removed": False}
logs = [log(i) for i in range(5000)]
n=20
t=timeit.timeit(lambda: deposit_bodies(logs, 31337, ESC), number=n)
print(f"{t/n/5000*1e6:.2f} us per log")
